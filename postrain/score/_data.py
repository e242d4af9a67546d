"""Toy data generated in code, and the 8×8 digits that ship with sklearn.

Every toy sampler is `fn(key, n) -> [n, 2]` float32 (`TOY_DATASETS`). The
Gaussian-mixture ring also exposes its parameters, so its noised score is
known exactly (`gmm_score`).
"""

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def gmm_ring(num: int = 8, *, radius: float = 2.0, std: float = 0.15
             ) -> dict[str, Array]:
  """Equal-weight isotropic 2-D Gaussians on a circle: weights, means, covs."""
  angle = 2 * np.pi * np.arange(num) / num
  means = radius * np.stack([np.cos(angle), np.sin(angle)], -1)
  covs = np.broadcast_to(std**2 * np.eye(2), (num, 2, 2))
  return dict(weights=jnp.full((num,), 1.0 / num), means=jnp.asarray(means),
              covs=jnp.asarray(covs))


def sample_gmm(key: Array, n: int, weights: Array, means: Array,
               covs: Array) -> Array:
  """n draws of Σ_k π_k N(μ_k, Σ_k), [n, d]."""
  k_c, k_z = jax.random.split(key)
  comp = jax.random.categorical(k_c, jnp.log(weights), shape=(n,))
  chol = jnp.linalg.cholesky(covs)
  z = jax.random.normal(k_z, (n, means.shape[-1]), means.dtype)
  return means[comp] + jnp.einsum('nij,nj->ni', chol[comp], z)


def _gmm_ring(key, n):
  return sample_gmm(key, n, **gmm_ring()).astype(jnp.float32)


def two_moons(key: Array, n: int, *, noise: float = 0.08) -> Array:
  """Two interleaved half circles plus Gaussian noise, [n, 2]."""
  k_u, k_s, k_z = jax.random.split(key, 3)
  u = jax.random.uniform(k_u, (n,)) * jnp.pi
  upper = jax.random.bernoulli(k_s, 0.5, (n,))
  x = jnp.where(upper, jnp.cos(u), 1 - jnp.cos(u))
  y = jnp.where(upper, jnp.sin(u), 0.5 - jnp.sin(u))
  pts = jnp.stack([x - 0.5, y - 0.25], -1)
  return pts + noise * jax.random.normal(k_z, (n, 2))


def checkerboard(key: Array, n: int) -> Array:
  """Uniform on the 8 dark squares of a 4×4 board on [−2, 2]², [n, 2]."""
  k_c, k_u = jax.random.split(key)
  cell = jax.random.randint(k_c, (n,), 0, 8)
  row = cell // 2
  col = 2 * (cell % 2) + row % 2
  u = jax.random.uniform(k_u, (n, 2))
  return jnp.stack([col + u[:, 0], row + u[:, 1]], -1) - 2.0


def swiss_roll(key: Array, n: int, *, noise: float = 0.05) -> Array:
  """The 2-D Swiss roll, scaled to about [−1.5, 1.5]², [n, 2]."""
  k_u, k_z = jax.random.split(key)
  t = 1.5 * jnp.pi * (1 + 2 * jax.random.uniform(k_u, (n,)))
  pts = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], -1) / 10.0
  return pts + noise * jax.random.normal(k_z, (n, 2))


TOY_DATASETS = {
    'gmm_ring': _gmm_ring,
    'two_moons': two_moons,
    'checkerboard': checkerboard,
    'swiss_roll': swiss_roll,
}


def digits() -> np.ndarray:
  """The 1797 sklearn 8×8 digit images, flattened and scaled to [−1, 1].

  Ships inside scikit-learn: nothing is downloaded. Returns [1797, 64]
  float32 (pixel values 0..16 mapped affinely).
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  pixels = datasets.load_digits().data.astype(np.float32)
  return pixels / 8.0 - 1.0
