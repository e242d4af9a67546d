"""Score-based kernels: forward processes, DSM, EDM preconditioning, SSM.

Notation (shared/specs/score.md): `x_t = α_t·x0 + σ_t·ε`, ε ~ N(0, I).
Every process below is a function `t -> Marginal(alpha, sigma, drift,
diffusion2)` of the SDE `dx = f(t)·x dt + g(t) dw` with `drift = f(t)` and
`diffusion2 = g(t)²`. Per-example quantities (`alpha`, `sigma`, `t`) have
shape [B] and broadcast against data of shape [B, ...].

Sources: Song & Ermon (arXiv:1907.05600); Song et al., *Score-Based Generative
Modeling through Stochastic Differential Equations* (arXiv:2011.13456);
Karras et al., *Elucidating the Design Space of Diffusion-Based Generative
Models* (arXiv:2206.00364); Vincent, *A Connection Between Score Matching
and Denoising Autoencoders* (2011).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast

Array = jax.Array


class Marginal(NamedTuple):
  """`x_t = alpha·x0 + sigma·ε`; SDE `dx = drift·x dt + sqrt(diffusion2) dw`."""
  alpha: Array
  sigma: Array
  drift: Array
  diffusion2: Array


def ve(t, *, sigma_min: float = 0.01, sigma_max: float = 50.0) -> Marginal:
  """Variance exploding: α = 1, σ(t) = σ_min·(σ_max/σ_min)^t, g² = dσ²/dt."""
  t = upcast(t)
  log_ratio = jnp.log(sigma_max / sigma_min)
  sigma = sigma_min * jnp.exp(t * log_ratio)
  return Marginal(jnp.ones_like(t), sigma, jnp.zeros_like(t),
                  2.0 * sigma**2 * log_ratio)


def vp(t, *, beta_min: float = 0.1, beta_max: float = 20.0) -> Marginal:
  """Variance preserving: β(t) = β_min + t(β_max − β_min).

  α_t = exp(−½β_min·t − ¼(β_max − β_min)·t²), σ_t² = 1 − α_t²,
  f = −½β(t), g² = β(t).
  """
  t = upcast(t)
  log_alpha = -0.5 * beta_min * t - 0.25 * (beta_max - beta_min) * t**2
  beta = beta_min + t * (beta_max - beta_min)
  # why expm1: σ² = 1 − α² loses every digit at small t otherwise.
  sigma = jnp.sqrt(-jnp.expm1(2.0 * log_alpha))
  return Marginal(jnp.exp(log_alpha), sigma, -0.5 * beta, beta)


def ou(t) -> Marginal:
  """Ornstein–Uhlenbeck: α = e^{−t}, σ² = 1 − e^{−2t} (VP with β ≡ 2)."""
  t = upcast(t)
  return Marginal(jnp.exp(-t), jnp.sqrt(-jnp.expm1(-2.0 * t)),
                  -jnp.ones_like(t), 2.0 * jnp.ones_like(t))


def edm(t) -> Marginal:
  """EDM: x_σ = x0 + σε with σ(t) = t (VE form), g² = dσ²/dt = 2t."""
  t = upcast(t)
  return Marginal(jnp.ones_like(t), t, jnp.zeros_like(t), 2.0 * t)


PROCESSES = {'ve': ve, 'vp': vp, 'ou': ou, 'edm': edm}


def edm_sigmas(n: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
               rho: float = 7.0) -> Array:
  """Karras sampling schedule σ_0 > … > σ_{N−1}, then σ_N = 0; [N + 1].

  σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ.
  """
  i = jnp.arange(n, dtype=upcast(0.0).dtype)
  lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
  sig = (hi + i / max(n - 1, 1) * (lo - hi)) ** rho
  return jnp.concatenate([sig, jnp.zeros((1,), sig.dtype)])


def edm_training_sigma(normal: Array, *, p_mean: float = -1.2,
                       p_std: float = 1.2) -> Array:
  """Training noise levels ln σ ~ N(P_mean, P_std²) from standard normals."""
  return jnp.exp(p_mean + p_std * upcast(normal))


# --- Parametrisations ------------------------------------------------------


def _bcast(a: Array, x: Array) -> Array:
  a = upcast(a)
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def _to_eps(name, pred, x_t, a, s):
  if name == 'eps':
    return pred
  if name == 'x0':
    return (x_t - a * pred) / s
  if name == 'score':
    return -s * pred
  return s * x_t + a * pred  # v; needs α² + σ² = 1.


def _from_eps(name, eps, x_t, a, s):
  if name == 'eps':
    return eps
  if name == 'x0':
    return (x_t - s * eps) / a
  if name == 'score':
    return -eps / s
  return (eps - s * x_t) / a  # v, from ε = σ·x_t + α·v.


def _check(name, valid, what):
  if name not in valid:
    raise ValueError(f'{what}={name!r}; valid: {sorted(valid)}.')


def convert(pred: Array, x_t: Array, alpha: Array, sigma: Array, src: str,
            dst: str) -> Array:
  """Maps a network prediction between parametrisations `eps, x0, score, v`.

  | name  | score ŝ           | clean estimate x̂0  |
  | eps   | −ε̂/σ              | (x_t − σε̂)/α       |
  | x0    | (α·x̂0 − x_t)/σ²   | x̂0                 |
  | score | ŝ                 | (x_t + σ²ŝ)/α      |
  | v     | via ε̂ = σx_t + αv̂ | αx_t − σv̂          |

  `v` (Salimans & Ho, *Progressive Distillation for Fast Sampling of
  Diffusion Models*, arXiv:2202.00512) needs α² + σ² = 1 (`vp`, `ou`).

  Args:
    pred: [B, ...] prediction in parametrisation `src`.
    x_t: [B, ...] noisy input.
    alpha, sigma: [B] (or scalars) of the process at the input's time.
    src, dst: parametrisation names.

  Returns:
    The prediction in parametrisation `dst`, [B, ...].

  Example:
    >>> convert(jnp.ones((1, 2)), jnp.zeros((1, 2)), 1., 2., 'eps', 'score')
    Array([[-0.5, -0.5]], ...)
  """
  _check(src, PARAMETRIZATIONS, 'parametrization')
  _check(dst, PARAMETRIZATIONS, 'parametrization')
  if src == dst:
    return pred
  a, s = _bcast(alpha, x_t), _bcast(sigma, x_t)
  x_t, pred = upcast(x_t), upcast(pred)
  if {src, dst} == {'x0', 'score'}:  # why direct: no 1/σ·σ round trip.
    if dst == 'score':
      return (a * pred - x_t) / s**2
    return (x_t + s**2 * pred) / a
  return _from_eps(dst, _to_eps(src, pred, x_t, a, s), x_t, a, s)


def _to_score(src):
  return lambda pred, x_t, alpha, sigma: convert(pred, x_t, alpha, sigma,
                                                 src, 'score')


# name -> `(pred, x_t, alpha, sigma) -> score`; `convert` maps any pair.
PARAMETRIZATIONS = {name: _to_score(name) for name in ('eps', 'x0', 'score',
                                                       'v')}


# --- Weightings: multipliers of ‖ε̂ − ε‖², SNR = α²/σ² ------------------------


def _w_unit(a, s, **_):
  return jnp.ones_like(s)


def _w_snr_inv(a, s, **_):
  return (s / a) ** 2


def _w_v(a, s, **_):
  return 1.0 / a**2


def _w_min_snr(a, s, *, gamma, **_):
  snr = (a / s) ** 2
  return jnp.minimum(snr, gamma) / snr


def _w_likelihood(a, s, *, g2, **_):
  if g2 is None:
    raise ValueError("weighting='likelihood' needs g2 = g(t)² (the process's "
                     'diffusion2).')
  return upcast(g2) / s**2


def _w_edm(a, s, *, sigma_data, **_):
  # λ(σ̃)·σ̃² with σ̃ = σ/α (the VE view of the process, spec §1), i.e. the
  # EDM weight λ = (σ̃² + σ_d²)/(σ̃·σ_d)² moved onto the ε-MSE.
  return ((s / a) ** 2 + sigma_data**2) / sigma_data**2


WEIGHTINGS = {
    'unit': _w_unit,
    'snr_inv': _w_snr_inv,
    'v': _w_v,
    'min_snr': _w_min_snr,
    'likelihood': _w_likelihood,
    'edm': _w_edm,
}


def dsm_weight(name: str, alpha: Array, sigma: Array, *, gamma: float = 5.0,
              sigma_data: float = 0.5, g2: Array | None = None) -> Array:
  """λ of `WEIGHTINGS[name]` as a multiplier of ‖ε̂ − ε‖², [B].

  unit 1 (DDPM, arXiv:2006.11239); snr_inv 1/SNR (plain x0-MSE); v 1/α²
  (plain v-MSE); min_snr min(SNR, γ)/SNR (arXiv:2303.09556); likelihood
  g²/σ² (score-MSE with λ = g², arXiv:2101.09258); edm (σ̃² + σ_d²)/σ_d²
  (arXiv:2206.00364).
  """
  _check(name, WEIGHTINGS, 'weighting')
  return WEIGHTINGS[name](upcast(alpha), upcast(sigma), gamma=gamma,
                          sigma_data=sigma_data, g2=g2)


# ‖native error‖² × this = ‖ε̂ − ε‖² (spec §2 equivalences).
def _eps_factor(name, a, s):
  return {'eps': 1.0, 'x0': (a / s) ** 2, 'score': s**2, 'v': a**2}[name]


def dsm_loss(pred: Array, x0: Array, eps: Array, alpha: Array, sigma: Array,
             *, parametrization: str = 'eps', weighting: str = 'unit',
             gamma: float = 5.0, sigma_data: float = 0.5,
             g2: Array | None = None) -> Array:
  """Denoising score matching, per example, [B].

  ℓ = λ(t)·‖ε̂ − ε‖², where ε̂ is `pred` seen as an ε-prediction. The error is
  taken in `pred`'s own parametrisation and rescaled by the exact identities
  ‖ŝ + ε/σ‖² = ‖ε̂ − ε‖²/σ² = (α²/σ⁴)·‖x̂0 − x0‖², ε̂ − ε = α·(v̂ − v), so no
  division by a small σ or α happens on the prediction. The population
  minimiser is the marginal score ∇log p_t (Vincent 2011).

  Args:
    pred: [B, ...] the model output in `parametrization`.
    x0: [B, ...] clean data.
    eps: [B, ...] the noise with x_t = α·x0 + σ·ε.
    alpha, sigma: [B] process coefficients at each example's time.
    parametrization: 'eps', 'x0', 'score' or 'v'.
    weighting: a key of `WEIGHTINGS`.
    gamma: γ of `min_snr`.
    sigma_data: σ_data of `edm`.
    g2: [B] g(t)², needed by `likelihood`.

  Returns:
    Per-example weighted loss, float32 (float64 under x64), [B].
  """
  _check(parametrization, PARAMETRIZATIONS, 'parametrization')
  x0, eps, pred = upcast(x0), upcast(eps), upcast(pred)
  a, s = _bcast(alpha, x0), _bcast(sigma, x0)
  target = {'eps': eps, 'x0': x0, 'score': -eps / s,
            'v': a * eps - s * x0}[parametrization]
  err = jnp.square(pred - target) * _eps_factor(parametrization, a, s)
  err = jnp.sum(err.reshape(err.shape[0], -1), axis=-1)
  return dsm_weight(weighting, alpha, sigma, gamma=gamma,
                   sigma_data=sigma_data, g2=g2) * err


def sigma_bucket_means(values: Array, sigma: Array, *, sigma_min: float,
                       sigma_max: float, num: int = 8) -> tuple[Array, Array]:
  """Means of `values` [B] in `num` log-spaced σ bins; (means, counts).

  Empty bins give mean 0 and count 0; σ outside the range falls in the end
  bins.
  """
  edges = jnp.linspace(jnp.log(sigma_min), jnp.log(sigma_max), num + 1)
  idx = jnp.clip(jnp.searchsorted(edges, jnp.log(upcast(sigma))) - 1, 0,
                 num - 1)
  onehot = jax.nn.one_hot(idx, num, dtype=upcast(values).dtype)
  counts = onehot.sum(0)
  sums = onehot.T @ upcast(values)
  return jnp.where(counts > 0, sums / jnp.maximum(counts, 1), 0.0), counts


# --- Karras (EDM) preconditioning --------------------------------------------


def edm_precond(sigma: Array, *, sigma_data: float = 0.5) -> dict[str, Array]:
  """c_skip, c_out, c_in, c_noise of D = c_skip·x + c_out·F(c_in·x; c_noise).

  c_skip = σ_d²/(σ² + σ_d²), c_out = σσ_d/sqrt(σ² + σ_d²),
  c_in = 1/sqrt(σ² + σ_d²), c_noise = ¼·ln σ (Karras et al. 2022, Table 1).
  """
  s2 = upcast(sigma) ** 2
  d2 = sigma_data**2
  return dict(c_skip=d2 / (s2 + d2),
              c_out=upcast(sigma) * sigma_data * jax.lax.rsqrt(s2 + d2),
              c_in=jax.lax.rsqrt(s2 + d2),
              c_noise=0.25 * jnp.log(upcast(sigma)))


def edm_loss_weight(sigma: Array, *, sigma_data: float = 0.5) -> Array:
  """λ(σ) = (σ² + σ_d²)/(σ·σ_d)²; λ·c_out² = 1."""
  s = upcast(sigma)
  return (s**2 + sigma_data**2) / (s * sigma_data) ** 2


def edm_loss(f_out: Array, x0: Array, x_sigma: Array, sigma: Array, *,
             sigma_data: float = 0.5) -> Array:
  """λ(σ)·‖D − x0‖² as the unit-weight MSE ‖F − (x0 − c_skip·x)/c_out‖², [B].

  Args:
    f_out: [B, ...] raw network output F.
    x0: [B, ...] clean data; x_sigma: [B, ...] = x0 + σ·n.
    sigma: [B] noise levels.
    sigma_data: data standard deviation.
  """
  c = edm_precond(sigma, sigma_data=sigma_data)
  skip, out = _bcast(c['c_skip'], x0), _bcast(c['c_out'], x0)
  target = (upcast(x0) - skip * upcast(x_sigma)) / out
  err = jnp.square(upcast(f_out) - target)
  return jnp.sum(err.reshape(err.shape[0], -1), axis=-1)


# --- Sliced score matching -----------------------------------------------------


def sliced_score_matching(
    score: Array, jvp: Array, v: Array, *, variance_reduction: bool = False
) -> tuple[Array, dict[str, Array]]:
  """Sliced score matching per example, [B], with its two terms.

  L = vᵀ∇_x(vᵀs(x)) + ½(vᵀs(x))²; with `variance_reduction` (SSM-VR, v
  Gaussian) the second term is ½‖s‖². Song, Garg, Shi, Ermon, *Sliced Score
  Matching: A Scalable Approach to Density and Score Estimation*
  (arXiv:1905.07088). The model call stays outside: get
  `(score, jvp) = jax.jvp(s_fn, (x,), (v,))`, one forward-mode product.

  Args:
    score: [B, ...] s(x).
    jvp: [B, ...] J·v, the Jacobian of s at x applied to v.
    v: [B, ...] projections (Gaussian or Rademacher).
    variance_reduction: use ½‖s‖² (only unbiased for E[vvᵀ] = I).

  Returns:
    (loss [B], dict(trace=vᵀJv [B], norm=the second term [B])).
  """
  flat = lambda a: upcast(a).reshape(a.shape[0], -1)
  s, jv, v = flat(score), flat(jvp), flat(v)
  trace = jnp.sum(v * jv, axis=-1)
  if variance_reduction:
    norm = 0.5 * jnp.sum(s * s, axis=-1)
  else:
    norm = 0.5 * jnp.sum(v * s, axis=-1) ** 2
  return trace + norm, dict(trace=trace, norm=norm)
