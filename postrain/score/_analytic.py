"""Closed-form scores of noised data (VE form `p_σ = p_data * N(0, σ²I)`).

| data          | score ∇log p_σ(x)                                          |
| gaussian      | (Σ + σ²I)^{-1}(μ − x)                                       |
| gmm           | Σ_k w_k(x)·(Σ_k + σ²I)^{-1}(μ_k − x),                       |
|               |   w = softmax_k[log π_k + log N(x; μ_k, Σ_k + σ²I)]         |
| delta_mixture | Σ_i softmax_i(−‖x − y_i‖²/(2σ²))·(y_i − x)/σ²               |

The delta mixture over a training set is the exact DSM optimum on that set
(memorisation). Covariances are diagonalised once (`eigh`), so one call
handles a different σ per example and zero-variance directions. For a
process with α ≠ 1 use `process_score`: ∇log p_t(x) = (1/α)·s̃(x/α, σ/α).
Wang & Vastola, *The Unreasonable Effectiveness of Gaussian Score
Approximation for Diffusion Models and its Applications* (arXiv:2412.09726).

Shapes: x [B, d]; sigma scalar or [B]; mean [d], cov [d, d]; GMM weights
[K], means [K, d], covs [K, d, d]; points [N, d].
"""

import jax
import jax.numpy as jnp

Array = jax.Array


def _col(sigma, x):
  sigma = jnp.asarray(sigma, x.dtype)
  return jnp.broadcast_to(sigma, x.shape[:1])[:, None]


def _gauss_parts(x, sigma, mean, cov):
  """(z = Uᵀ(x − μ), λ + σ², U) for N(μ, Σ + σ²I)."""
  lam, u = jnp.linalg.eigh(cov)
  lam = jnp.maximum(lam, 0.0)  # why: eigh returns −1e-17 for singular Σ.
  z = (x - mean) @ u
  return z, lam + _col(sigma, x) ** 2, u


def gaussian_log_density(x: Array, sigma, mean: Array, cov: Array) -> Array:
  """log N(x; μ, Σ + σ²I), [B]."""
  z, var, _ = _gauss_parts(x, sigma, mean, cov)
  return -0.5 * jnp.sum(jnp.log(2 * jnp.pi * var) + z**2 / var, axis=-1)


def gaussian_score(x: Array, sigma, mean: Array, cov: Array) -> Array:
  """(Σ + σ²I)^{-1}(μ − x), [B, d].

  Example:
    >>> gaussian_score(jnp.ones((1, 2)), 1.0, jnp.zeros(2), jnp.eye(2))
    Array([[-0.5, -0.5]], ...)
  """
  z, var, u = _gauss_parts(x, sigma, mean, cov)
  return -(z / var) @ u.T


def gaussian_denoiser(x: Array, sigma, mean: Array, cov: Array) -> Array:
  """E[x0 | x_σ] = μ + Σ(Σ + σ²I)^{-1}(x − μ) = x + σ²·score (Tweedie)."""
  return x + _col(sigma, x) ** 2 * gaussian_score(x, sigma, mean, cov)


def _gmm_parts(x, sigma, weights, means, covs):
  def one(mean, cov):
    z, var, u = _gauss_parts(x, sigma, mean, cov)
    logp = -0.5 * jnp.sum(jnp.log(2 * jnp.pi * var) + z**2 / var, axis=-1)
    return logp, -(z / var) @ u.T

  logp, scores = jax.vmap(one, out_axes=(1, 1))(means, covs)  # [B,K], [B,K,d]
  return jnp.log(weights) + logp, scores


def gmm_log_density(x: Array, sigma, weights: Array, means: Array,
                    covs: Array) -> Array:
  """log Σ_k π_k N(x; μ_k, Σ_k + σ²I), [B]."""
  joint, _ = _gmm_parts(x, sigma, weights, means, covs)
  return jax.nn.logsumexp(joint, axis=-1)


def gmm_score(x: Array, sigma, weights: Array, means: Array,
              covs: Array) -> Array:
  """Σ_k w_k(x)·(Σ_k + σ²I)^{-1}(μ_k − x) with posterior weights w, [B, d]."""
  joint, scores = _gmm_parts(x, sigma, weights, means, covs)
  w = jax.nn.softmax(joint, axis=-1)
  return jnp.einsum('BK,BKd->Bd', w, scores)


def _delta_logits(x, sigma, points):
  # ‖x − y‖² = ‖x‖² − 2x·y + ‖y‖²; [B, N, d] differences would not fit.
  sq = (jnp.sum(x**2, -1, keepdims=True) - 2 * x @ points.T
        + jnp.sum(points**2, -1))
  return -jnp.maximum(sq, 0.0) / (2 * _col(sigma, x) ** 2)


def delta_mixture_log_density(x: Array, sigma, points: Array) -> Array:
  """log (1/N) Σ_i N(x; y_i, σ²I), [B]."""
  n, d = points.shape
  s2 = _col(sigma, x)[:, 0] ** 2
  return (jax.nn.logsumexp(_delta_logits(x, sigma, points), axis=-1)
          - jnp.log(n) - 0.5 * d * jnp.log(2 * jnp.pi * s2))


def delta_mixture_score(x: Array, sigma, points: Array) -> Array:
  """Σ_i softmax_i(−‖x − y_i‖²/(2σ²))·(y_i − x)/σ², [B, d]."""
  w = jax.nn.softmax(_delta_logits(x, sigma, points), axis=-1)
  return (w @ points - x) / _col(sigma, x) ** 2


ANALYTIC_SCORES = {
    'gaussian': gaussian_score,
    'gmm': gmm_score,
    'delta_mixture': delta_mixture_score,
}


def process_score(score_ve, x: Array, alpha, sigma) -> Array:
  """∇log p_t(x) = (1/α)·s̃(x/α, σ/α) from a VE-form score `s̃(x, σ)`.

  x_t/α = x0 + (σ/α)·ε, so a marginal with α ≠ 1 is a scaled VE marginal.
  """
  a = _col(alpha, x)
  return score_ve(x / a, _col(sigma, x)[:, 0] / a[:, 0]) / a
