"""Denoising score matching: where the score kernels meet a score network.

`Diffusion` fixes the forward process, what the network predicts and the
input scaling; `make_objective` draws (t, ε) and calls `losses.dsm_loss`
once per batch. The network sees the VE view of every process (x/α at
σ̃ = σ/α, spec §1) through Karras's scalings: input c_in(σ̃)·x/α, noise
feature c_noise(σ̃) = ¼·ln σ̃. With `precondition` the prediction is the
denoiser D = c_skip·x/α + c_out·F (Karras et al., arXiv:2206.00364, §5);
otherwise F itself is the prediction in `parametrization`.
"""

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp

from postrain import losses


@dataclasses.dataclass(frozen=True)
class Diffusion:
  """Process, parametrisation and preconditioning of one score model.

  Attributes:
    process: a key of `losses.PROCESSES`.
    process_kwargs: (name, value) pairs for the process (e.g. sigma_max).
    parametrization: what the prediction is: 'eps', 'x0', 'score' or 'v'.
    precondition: Karras preconditioning (needs parametrization 'x0').
    sigma_data: σ_d of the scalings (the data standard deviation).
  """
  process: str = 'edm'
  process_kwargs: tuple[tuple[str, float], ...] = ()
  parametrization: str = 'x0'
  precondition: bool = True
  sigma_data: float = 0.5

  def __post_init__(self):
    if self.process not in losses.PROCESSES:
      raise ValueError(f'process={self.process!r}; valid: '
                       f'{sorted(losses.PROCESSES)}.')
    if self.parametrization not in losses.PARAMETRIZATIONS:
      raise ValueError(f'parametrization={self.parametrization!r}; valid: '
                       f'{sorted(losses.PARAMETRIZATIONS)}.')
    if self.precondition and self.parametrization != 'x0':
      raise ValueError('precondition=True makes the network a denoiser: set '
                       f"parametrization='x0' (got {self.parametrization!r}).")
    if self.parametrization == 'v' and self.process not in ('vp', 'ou'):
      raise ValueError("parametrization='v' needs α² + σ² = 1: use process "
                       f"'vp' or 'ou' (got {self.process!r}).")

  def marginal(self, t) -> losses.Marginal:
    return losses.PROCESSES[self.process](t, **dict(self.process_kwargs))

  def prediction(self, model, x_t, t):
    """The network's prediction at (x_t, t [B]) and the marginal there."""
    m = self.marginal(jnp.broadcast_to(t, x_t.shape[:1]))
    a = m.alpha[:, None]
    c = losses.edm_precond(m.sigma / m.alpha, sigma_data=self.sigma_data)
    f = model(c['c_in'][:, None] * x_t / a, c['c_noise'])
    if self.precondition:
      f = c['c_skip'][:, None] * x_t / a + c['c_out'][:, None] * f
    return f, m

  def score(self, model, x_t, t):
    """∇log p_t(x_t) as the model estimates it, [B, D]."""
    pred, m = self.prediction(model, x_t, t)
    return losses.convert(pred, x_t, m.alpha, m.sigma, self.parametrization,
                          'score')

  def sample_t(self, key, n, *, t_min=1e-3, p_mean=-1.2, p_std=1.2,
               stratified=True):
    """Training times: ln σ ~ N(P_mean, P_std²) for `edm`, else U[t_min, 1].

    Stratified: one uniform draw in each of n equal strata (lower variance).
    """
    u = jax.random.uniform(key, (n,))
    if stratified:
      u = (jnp.arange(n) + u) / n
    if self.process == 'edm':
      u = jnp.clip(u, 1e-6, 1 - 1e-6)
      return losses.edm_training_sigma(jax.scipy.stats.norm.ppf(u),
                                       p_mean=p_mean, p_std=p_std)
    return t_min + (1.0 - t_min) * u


def make_dsm(graphdef, diffusion: Diffusion, *, weighting: str = 'edm',
             gamma: float = 5.0):
  """`dsm(params, x0, t, eps) -> (loss [B], sigma_tilde [B], score [B, D])`.

  Fixed (t, ε) draws give the held-out DSM of early stopping (spec §8).
  """
  if weighting not in losses.WEIGHTINGS:
    raise ValueError(f'weighting={weighting!r}; valid: '
                     f'{sorted(losses.WEIGHTINGS)}.')

  def dsm(params, x0, t, eps):
    model = nnx.merge(graphdef, params)
    m = diffusion.marginal(t)
    x_t = m.alpha[:, None] * x0 + m.sigma[:, None] * eps
    pred, _ = diffusion.prediction(model, x_t, t)
    loss = losses.dsm_loss(
        pred, x0, eps, m.alpha, m.sigma,
        parametrization=diffusion.parametrization, weighting=weighting,
        gamma=gamma, sigma_data=diffusion.sigma_data, g2=m.diffusion2)
    s = losses.convert(pred, x_t, m.alpha, m.sigma,
                       diffusion.parametrization, 'score')
    return loss, m.sigma / m.alpha, s

  return dsm


def make_objective(graphdef, diffusion: Diffusion, *, weighting: str = 'edm',
                   gamma: float = 5.0, t_min: float = 1e-3,
                   p_mean: float = -1.2, p_std: float = 1.2,
                   stratified: bool = True, bucket_sigma_min: float = 2e-3,
                   bucket_sigma_max: float = 80.0):
  """`objective(params, batch, rng) -> (loss, metrics)` for DSM.

  `batch['x']` is [B, D] clean data. Metrics: the mean DSM loss and the mean
  predicted score norm in 8 log-spaced σ̃ bins (`dsm/bin_i`,
  `score_norm/bin_i`; σ̃ = σ/α), plus `tokens` = B for the harness.
  """
  dsm = make_dsm(graphdef, diffusion, weighting=weighting, gamma=gamma)

  def objective(params, batch, rng):
    x0 = batch['x']
    k_t, k_e = jax.random.split(rng)
    t = diffusion.sample_t(k_t, x0.shape[0], t_min=t_min, p_mean=p_mean,
                           p_std=p_std, stratified=stratified)
    eps = jax.random.normal(k_e, x0.shape, x0.dtype)
    loss, sig, s = dsm(params, x0, t, eps)
    bins = dict(sigma_min=bucket_sigma_min, sigma_max=bucket_sigma_max)
    per_bin, _ = losses.sigma_bucket_means(jax.lax.stop_gradient(loss), sig,
                                           **bins)
    norms, _ = losses.sigma_bucket_means(
        jnp.linalg.norm(jax.lax.stop_gradient(s), axis=-1), sig, **bins)
    metrics = {f'dsm/bin_{i}': v for i, v in enumerate(per_bin)}
    metrics.update({f'score_norm/bin_{i}': v for i, v in enumerate(norms)})
    metrics['tokens'] = jnp.float32(x0.shape[0])
    return jnp.mean(loss), metrics

  return objective


def make_score_fn(graphdef, diffusion: Diffusion):
  """`score(params, x, t) -> ∇log p_t(x)`; t a scalar or [B]."""
  def score(params, x, t):
    return diffusion.score(nnx.merge(graphdef, params), x, t)
  return score
