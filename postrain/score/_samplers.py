"""Reverse-time samplers over a decreasing time grid, with exact NFE counts.

Every sampler is `sampler(score_fn, process, ts, x, key, **hp) -> (x, nfe)`:
`score_fn(x, t)` gives ∇log p_t at a scalar time t for a batch x [B, ...];
`process` maps t to its `Marginal` (α, σ, f, g²) with drift f(x, t) = f(t)·x;
`ts` [N + 1] runs from the initial time down to the last (the EDM grid ends
at σ = 0); `x` is the initial noise. The NFE counter is a loop carry that
every call of `score_fn` increments, so it counts calls, not a formula.
The loops are `lax.fori_loop`s: one compile per grid length.

Song et al., *Score-Based Generative Modeling through Stochastic
Differential Equations* (arXiv:2011.13456); Karras et al., *Elucidating the
Design Space of Diffusion-Based Generative Models* (arXiv:2206.00364).
"""

import jax
import jax.numpy as jnp

from postrain.losses import _score

Array = jax.Array


def _counted(score_fn):
  def call(x, t, nfe):
    return score_fn(x, t), nfe + 1
  return call


def _ode_slope(score, x, t, process, nfe):
  """dx/dt = f·x − ½g²·∇log p_t (EDM: (x − D)/σ)."""
  m = process(t)
  s, nfe = score(x, t, nfe)
  return m.drift * x - 0.5 * m.diffusion2 * s, nfe


def _em_step(score, process, x, t, t_next, z, nfe):
  m = process(t)
  s, nfe = score(x, t, nfe)
  dt = t_next - t  # < 0
  mean = x + (m.drift * x - m.diffusion2 * s) * dt
  return mean, mean + jnp.sqrt(m.diffusion2 * -dt) * z, nfe


def euler_maruyama(score_fn, process, ts: Array, x: Array, key: Array, *,
                   denoise: bool = False) -> tuple[Array, Array]:
  """Reverse SDE: x ← x − [f − g²ŝ]Δ + g·sqrt(Δ)·z, NFE = N (+1 to denoise).

  With `denoise`, a final Tweedie step x0 = (x + σ²ŝ)/α at ts[-1] (σ > 0).
  """
  score = _counted(score_fn)

  def body(i, carry):
    x, nfe = carry
    z = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
    _, x, nfe = _em_step(score, process, x, ts[i], ts[i + 1], z, nfe)
    return x, nfe

  x, nfe = jax.lax.fori_loop(0, ts.shape[0] - 1, body, (x, jnp.int32(0)))
  if denoise:
    m = process(ts[-1])
    s, nfe = score(x, ts[-1], nfe)
    x = (x + m.sigma**2 * s) / m.alpha
  return x, nfe


def pf_euler(score_fn, process, ts: Array, x: Array, key: Array
             ) -> tuple[Array, Array]:
  """Probability-flow ODE, Euler: x ← x + (f·x − ½g²ŝ)·(t_{i+1} − t_i), NFE = N.
  """
  del key  # deterministic
  score = _counted(score_fn)

  def body(i, carry):
    x, nfe = carry
    d, nfe = _ode_slope(score, x, ts[i], process, nfe)
    return x + (ts[i + 1] - ts[i]) * d, nfe

  return jax.lax.fori_loop(0, ts.shape[0] - 1, body, (x, jnp.int32(0)))


def heun(score_fn, process, ts: Array, x: Array, key: Array
         ) -> tuple[Array, Array]:
  """EDM deterministic sampler (Karras et al., Algorithm 1), second order.

  d = slope(x, t_i); x' = x + (t_{i+1} − t_i)·d; if t_{i+1} > 0:
  x ← x + (t_{i+1} − t_i)·(d + slope(x', t_{i+1}))/2, else x ← x'.
  NFE = 2N − 1 on a grid ending at 0, 2N otherwise.
  """
  del key  # deterministic
  score = _counted(score_fn)

  def body(i, carry):
    x, nfe = carry
    t, t_next = ts[i], ts[i + 1]
    d, nfe = _ode_slope(score, x, t, process, nfe)
    x_euler = x + (t_next - t) * d

    def correct(args):
      x_e, nfe = args
      d2, nfe = _ode_slope(score, x_e, t_next, process, nfe)
      return x + (t_next - t) * 0.5 * (d + d2), nfe

    return jax.lax.cond(t_next > 0, correct, lambda a: a, (x_euler, nfe))

  return jax.lax.fori_loop(0, ts.shape[0] - 1, body, (x, jnp.int32(0)))


def predictor_corrector(score_fn, process, ts: Array, x: Array, key: Array,
                        *, snr: float = 0.16, n_corrector: int = 1
                        ) -> tuple[Array, Array]:
  """Langevin corrector then reverse-SDE predictor at each t_i, NFE = N(1+M).

  Corrector: x ← x + ε_L·ŝ + sqrt(2ε_L)·z with ε_L = 2(r‖z‖/‖ŝ‖)², norms
  averaged over the batch, r = `snr`. Song et al.'s code multiplies ε_L by
  α_i = 1 − β_i/N for VP; the spec's form (no factor) is used here.
  """
  score = _counted(score_fn)

  def langevin(j, carry):
    x, nfe, k, t = carry
    s, nfe = score(x, t, nfe)
    z = jax.random.normal(jax.random.fold_in(k, j), x.shape, x.dtype)
    norm = lambda a: jnp.mean(jnp.sqrt(jnp.sum(
        a.reshape(a.shape[0], -1) ** 2, -1)))
    eps_l = 2.0 * (snr * norm(z) / norm(s)) ** 2
    return x + eps_l * s + jnp.sqrt(2.0 * eps_l) * z, nfe, k, t

  def body(i, carry):
    x, nfe = carry
    k_c, k_p = jax.random.split(jax.random.fold_in(key, i))
    x, nfe, _, _ = jax.lax.fori_loop(0, n_corrector, langevin,
                                     (x, nfe, k_c, ts[i]))
    z = jax.random.normal(k_p, x.shape, x.dtype)
    _, x, nfe = _em_step(score, process, x, ts[i], ts[i + 1], z, nfe)
    return x, nfe

  return jax.lax.fori_loop(0, ts.shape[0] - 1, body, (x, jnp.int32(0)))


SAMPLERS = {
    'euler_maruyama': euler_maruyama,
    'pf_euler': pf_euler,
    'heun': heun,
    'predictor_corrector': predictor_corrector,
}


def time_grid(process_name: str, num_steps: int, *, t_min: float = 1e-3,
              sigma_min: float = 0.002, sigma_max: float = 80.0,
              rho: float = 7.0) -> Array:
  """The sampling grid [N + 1]: Karras σ's (ending at 0) for `edm`, else
  N uniform steps from t = 1 down to `t_min`."""
  if process_name == 'edm':
    return _score.edm_sigmas(num_steps, sigma_min=sigma_min,
                             sigma_max=sigma_max, rho=rho)
  if process_name not in _score.PROCESSES:
    raise ValueError(f'process={process_name!r}; valid: '
                     f'{sorted(_score.PROCESSES)}.')
  return jnp.linspace(1.0, t_min, num_steps + 1)


def prior_sample(key: Array, process, t0, shape) -> Array:
  """The usual prior N(0, σ(t0)²·I) of the reverse process.

  It drops the α(t0)·x0 part of p_{t0}, negligible when σ(t0) is much larger
  than α(t0) times the data scale (σ_max = 80 for `edm`, t = 1 for `vp`).
  """
  return process(jnp.asarray(t0)).sigma * jax.random.normal(key, shape)
