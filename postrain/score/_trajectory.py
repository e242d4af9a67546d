"""Closed-form probability-flow trajectory of Gaussian data, and teleport.

Wang & Vastola, *The Unreasonable Effectiveness of Gaussian Score
Approximation for Diffusion Models and its Applications* (arXiv:2412.09726),
§3: with Σ = U diag(λ) Uᵀ the PF-ODE dx/dσ = −σ·∇log p_σ(x) started at
(x_T, σ_T) solves to

  x(σ) = μ + Σ_k sqrt((σ² + λ_k)/(σ_T² + λ_k))·u_k u_kᵀ(x_T − μ).

High-variance directions settle first (coarse to fine). Teleport moves the
initial noise straight to a lower noise level with this map (the data mean
and covariance standing in for the data), so a learned sampler can skip its
first steps.
"""

import jax
import jax.numpy as jnp

Array = jax.Array


def gaussian_pf_trajectory(x_T: Array, sigma_T, sigma, mean: Array,
                           cov: Array) -> Array:
  """x(σ) of the Gaussian PF-ODE (VE form) from x(σ_T) = x_T, [B, d]."""
  lam, u = jnp.linalg.eigh(cov)
  lam = jnp.maximum(lam, 0.0)
  scale = jnp.sqrt((jnp.asarray(sigma) ** 2 + lam)
                   / (jnp.asarray(sigma_T) ** 2 + lam))
  return mean + ((x_T - mean) @ u * scale) @ u.T


def teleport(x: Array, t_from, t_to, process, mean: Array,
             cov: Array) -> Array:
  """Moves samples of p_{t_from} to t_to along the Gaussian PF-ODE.

  For a process with α ≠ 1 the VE view is used (x/α at σ/α, spec §1).

  Args:
    x: [B, d] samples at time `t_from` (usually the sampler's initial noise).
    t_from, t_to: process times, t_to < t_from.
    process: `t -> Marginal` (e.g. `losses.PROCESSES['vp']`).
    mean, cov: the data's mean [d] and covariance [d, d].

  Returns:
    [B, d] points at time `t_to`.
  """
  a, b = process(jnp.asarray(t_from)), process(jnp.asarray(t_to))
  y = gaussian_pf_trajectory(x / a.alpha, a.sigma / a.alpha,
                             b.sigma / b.alpha, mean, cov)
  return b.alpha * y


def teleport_index(num_steps: int, fraction: float = 0.2) -> int:
  """Steps skipped when teleporting past `fraction` of a schedule (0.2)."""
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'teleport fraction={fraction}; must be in [0, 1).')
  return int(round(fraction * num_steps))
