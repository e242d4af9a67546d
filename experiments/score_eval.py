"""Score-model builders and evaluation: config -> data, model, diffusion;
held-out DSM, score R² per noise level, sample quality, plots.

Like builders.py, one of the few modules that read a config.
"""

import functools
import json

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from postrain import recipes
from postrain import score

IMAGE_DATASETS = {'digits': (8, 8, 1)}


def data(c, seed: int):
  """`(train [N, D], test [M, D], info)`; info holds the analytic references.

  Toy sets are drawn from `score.TOY_DATASETS`; `digits` is shuffled and
  split. `info` has the training mean/covariance (`gaussian`), the training
  set (`delta_mixture`) and, for `gmm_ring`, the exact mixture (`gmm`).
  """
  key = jax.random.key(seed + 1000)
  if c.name in score.TOY_DATASETS:
    k_tr, k_te = jax.random.split(key)
    train = score.TOY_DATASETS[c.name](k_tr, c.num_train)
    test = score.TOY_DATASETS[c.name](k_te, c.num_test)
  elif c.name == 'digits':
    x = score.digits()
    if c.num_train + c.num_test > len(x):
      raise ValueError(f'config.data: num_train + num_test = '
                       f'{c.num_train + c.num_test} > {len(x)} digits.')
    x = x[np.random.default_rng(seed).permutation(len(x))]
    train, test = x[:c.num_train], x[len(x) - c.num_test:]
  else:
    raise ValueError(f'config.data.name={c.name!r}; valid: '
                     f'{sorted(score.TOY_DATASETS) + ["digits"]}.')
  train, test = jnp.asarray(train, jnp.float32), jnp.asarray(test, jnp.float32)
  info = dict(gaussian=dict(mean=train.mean(0),
                            cov=jnp.cov(train.T, bias=True)),
              delta_mixture=dict(points=train))
  if c.name == 'gmm_ring':
    info['gmm'] = score.gmm_ring()
  return train, test, info


def model(c, dim: int, data_name: str, rng: int):
  """The score network of `config.model` (kind `mlp` or `conv`)."""
  rngs = nnx.Rngs(rng)
  if c.kind == 'mlp':
    return score.ScoreMLP(dim, hidden=c.hidden, depth=c.depth,
                          embed_dim=c.embed_dim, rngs=rngs)
  if c.kind == 'conv':
    if data_name not in IMAGE_DATASETS:
      raise ValueError(f"config.model.kind='conv' needs image data "
                       f'({sorted(IMAGE_DATASETS)}); got {data_name!r}.')
    return score.ScoreConvNet(IMAGE_DATASETS[data_name], channels=c.channels,
                              depth=c.depth, embed_dim=c.embed_dim, rngs=rngs)
  raise ValueError(f'config.model.kind={c.kind!r}; valid: mlp, conv.')


def diffusion(c, train) -> recipes.score.Diffusion:
  """`config.diffusion` -> `Diffusion`; sigma_data 0 = the data's std."""
  kwargs = {'ve': (('sigma_min', c.ve_sigma_min),
                   ('sigma_max', c.ve_sigma_max)),
            'vp': (('beta_min', c.vp_beta_min), ('beta_max', c.vp_beta_max))}
  sigma_data = c.sigma_data or float(jnp.std(train))
  return recipes.score.Diffusion(
      process=c.process, process_kwargs=kwargs.get(c.process, ()),
      parametrization=c.parametrization, precondition=c.precondition,
      sigma_data=sigma_data)


def noise_levels(diff, sampler_c, num: int, t_min: float):
  """Evaluation times (log-spaced σ̃ for `edm`/`ve`; uniform t otherwise)."""
  if diff.process == 'edm':
    return jnp.geomspace(sampler_c.sigma_min, sampler_c.sigma_max, num)
  return jnp.linspace(t_min if diff.process != 've' else 0.0, 1.0, num)


def fixed_draws(key, x, num_draws, diff, loss_c):
  """Common random numbers (t, ε) for `num_draws` copies of every point."""
  x = jnp.repeat(x, num_draws, axis=0)
  k_t, k_e = jax.random.split(key)
  t = diff.sample_t(k_t, x.shape[0], t_min=loss_c.t_min,
                    p_mean=loss_c.p_mean, p_std=loss_c.p_std,
                    stratified=False)
  return x, t, jax.random.normal(k_e, x.shape)


def references(info):
  """Analytic VE scores `s(x, σ)` by name for the data at hand."""
  out = {'gaussian': functools.partial(score.gaussian_score, **info['gaussian']),
         'delta_mixture': functools.partial(score.delta_mixture_score,
                                            **info['delta_mixture'])}
  if 'gmm' in info:
    out['gmm'] = functools.partial(score.gmm_score, **info['gmm'])
  return out


def score_r2(score_fn, params, diff, x0, times, key, refs):
  """R² of the learned score against each reference at each time.

  Points are x = α·x0 + σ·ε (noised held-out data). Returns
  `{ref: [R² per time]}` and the σ̃ = σ/α of each time.
  """
  out = {name: [] for name in refs}
  exact_fns = {name: jax.jit(functools.partial(score.process_score, ref))
               for name, ref in refs.items()}
  sig = []
  for i, t in enumerate(times):
    m = diff.marginal(t)
    eps = jax.random.normal(jax.random.fold_in(key, i), x0.shape)
    x = m.alpha * x0 + m.sigma * eps
    learned = score_fn(params, x, t)
    for name, exact_fn in exact_fns.items():
      exact = exact_fn(x, m.alpha, m.sigma)
      out[name].append(float(score.score_r2(learned, exact)))
    sig.append(float(m.sigma / m.alpha))
  return out, sig


def make_sampler(score_fn, diff, sampler_c):
  """Jitted `(params, ts, x, key) -> (samples, NFE)` of `config.sampler`."""
  if sampler_c.name not in score.SAMPLERS:
    raise ValueError(f'config.sampler.name={sampler_c.name!r}; valid: '
                     f'{sorted(score.SAMPLERS)}.')

  def run(params, ts, x, key):
    return score.SAMPLERS[sampler_c.name](
        lambda y, t: score_fn(params, y, t), diff.marginal, ts, x, key)

  return jax.jit(run)


def sample(sampler, params, diff, sampler_c, n, key, *, dim, t_min,
           teleport_to=0, gaussian=None):
  """Samples from the prior with `sampler`; with `teleport_to` = k > 0 the
  noise first moves to ts[k] along the Gaussian PF-ODE of `gaussian`
  (mean, cov) and the sampler runs the rest. Returns (samples, NFE)."""
  ts = score.time_grid(diff.process, sampler_c.num_steps, t_min=t_min,
                       sigma_min=sampler_c.sigma_min,
                       sigma_max=sampler_c.sigma_max, rho=sampler_c.rho)
  k_prior, k_run = jax.random.split(key)
  x = score.prior_sample(k_prior, diff.marginal, ts[0], (n, dim))
  if teleport_to:
    x = score.teleport(x, ts[0], ts[teleport_to], diff.marginal, **gaussian)
    ts = ts[teleport_to:]
  x, nfe = sampler(params, ts, x, k_run)
  return x, int(nfe)


def sample_quality(samples, test, key, num_projections=256):
  """MMD² (median bandwidth) and sliced W2 to held-out data (equal sizes)."""
  n = min(len(samples), len(test))
  samples, test = samples[:n], test[:n]
  sw = functools.partial(score.sliced_wasserstein,
                         num_projections=num_projections)
  return {'mmd': float(jax.jit(score.mmd2)(samples, test)),
          'sw': float(jax.jit(sw)(samples, test, key))}


def plot_samples(path, samples, test, data_name):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  samples, test = np.asarray(samples), np.asarray(test)
  if data_name in IMAGE_DATASETS:
    h, w, _ = IMAGE_DATASETS[data_name]
    fig, axes = plt.subplots(4, 8, figsize=(8, 4))
    for ax, img in zip(axes.flat, samples):
      ax.imshow(np.clip(img.reshape(h, w), -1, 1), cmap='gray_r')
      ax.axis('off')
  else:
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(*test[:, :2].T, s=2, alpha=0.4, label='held-out')
    ax.scatter(*samples[:, :2].T, s=2, alpha=0.4, label='samples')
    ax.legend(markerscale=4)
    ax.set_aspect('equal')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_r2(path, r2, sigmas):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for name, vals in r2.items():
    ax.plot(sigmas, vals, marker='.', label=name)
  ax.set_xscale('log')
  ax.set_ylim(-0.1, 1.02)
  ax.set_xlabel('noise level σ/α')
  ax.set_ylabel('R² of learned score')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_json(path, obj):
  with open(path, 'w') as f:
    json.dump(obj, f, indent=2)
