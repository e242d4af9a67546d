"""Sample and score metrics: score R², MMD², sliced Wasserstein.

Gretton et al., *A Kernel Two-Sample Test* (JMLR 2012) for MMD; sliced
Wasserstein as in Bonneel et al. (2015): 1-D optimal transport of sorted
projections, averaged over random directions.
"""

import jax
import jax.numpy as jnp

Array = jax.Array


def score_r2(pred: Array, ref: Array) -> Array:
  """1 − E‖ŝ − s*‖² / E‖s* − E s*‖² over the batch of [B, ...] scores."""
  flat = lambda a: a.reshape(a.shape[0], -1)
  pred, ref = flat(pred), flat(ref)
  err = jnp.mean(jnp.sum((pred - ref) ** 2, -1))
  var = jnp.mean(jnp.sum((ref - ref.mean(0)) ** 2, -1))
  return 1.0 - err / var


def _sq_dists(x, y):
  return jnp.maximum(jnp.sum(x**2, -1)[:, None] - 2 * x @ y.T
                     + jnp.sum(y**2, -1)[None], 0.0)


def median_bandwidth(x: Array, y: Array) -> Array:
  """Median pairwise distance of the pooled sample (off-diagonal)."""
  z = jnp.concatenate([x, y])
  d = jnp.sqrt(_sq_dists(z, z))
  # why nan + nanmedian: boolean masking has no static shape under jit.
  return jnp.nanmedian(jnp.where(jnp.eye(z.shape[0], dtype=bool), jnp.nan, d))


def mmd2(x: Array, y: Array, *, bandwidth: float | Array | None = None
         ) -> Array:
  """Unbiased MMD² U-statistic with the Gaussian kernel exp(−‖a−b‖²/(2h²)).

  Args:
    x: [n, d] samples; y: [m, d] samples.
    bandwidth: h; default the median pairwise distance of x ∪ y.

  Returns:
    Σ_{i≠j} k(x_i,x_j)/(n(n−1)) + Σ_{i≠j} k(y_i,y_j)/(m(m−1))
    − 2·mean k(x_i, y_j); may be slightly negative.
  """
  x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
  h = median_bandwidth(x, y) if bandwidth is None else bandwidth
  k = lambda a, b: jnp.exp(-_sq_dists(a, b) / (2 * h**2))
  n, m = x.shape[0], y.shape[0]
  kxx, kyy = k(x, x), k(y, y)
  off = lambda kk, c: (kk.sum() - jnp.trace(kk)) / (c * (c - 1))
  return off(kxx, n) + off(kyy, m) - 2 * jnp.mean(k(x, y))


def sliced_wasserstein(x: Array, y: Array, key: Array, *,
                       num_projections: int = 256, p: int = 2) -> Array:
  """(mean over P random unit directions of W_p^p of the 1-D projections)^(1/p).

  Needs equal sample sizes: the 1-D W_p between equal-size empirical
  measures pairs the sorted projections.
  """
  x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f'sliced_wasserstein needs equal sample sizes; got '
                     f'{x.shape[0]} and {y.shape[0]}.')
  dirs = jax.random.normal(key, (x.shape[1], num_projections), x.dtype)
  dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
  px, py = jnp.sort(x @ dirs, axis=0), jnp.sort(y @ dirs, axis=0)
  return jnp.mean(jnp.abs(px - py) ** p) ** (1.0 / p)
