"""Per-token KL estimators and their two placements (in reward, in loss).

Schulman, *Approximating KL Divergence* (blog note, 2020). With
`d_t = logp_t − ref_logp_t` and tokens sampled from π:

  k1 = d              E = KL(π‖π_ref)   E[∇k1] = 0
  k2 = ½ d²           E ≈ KL            E[∇k2] = ∇KL(π‖π_ref)
  k3 = e^{−d} + d − 1 E = KL(π‖π_ref)   E[∇k3] = ∇KL(π_ref‖π)
  k3_st               value of k3, gradient of k2 (straight-through)

All estimators return per-token `[B, T]` arrays, zero on masked tokens.
"""

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast

Array = jax.Array
sg = jax.lax.stop_gradient



def _log_ratio(logp: Array, ref_logp: Array, mask: Array) -> Array:
  # why where on both inputs: padded log-probs may be -inf; keep grads finite.
  ok = mask > 0
  return jnp.where(ok, upcast(logp), 0) - jnp.where(ok, upcast(ref_logp), 0)


def k1(logp: Array, ref_logp: Array, mask: Array) -> Array:
  """`k1 = logπ − logπ_ref`: unbiased KL value, zero expected gradient.

  Example:
    >>> k1(jnp.array([[-1.]]), jnp.array([[-2.]]), jnp.ones((1, 1)))  # 1.
  """
  return _log_ratio(logp, ref_logp, mask) * upcast(mask)


def k2(logp: Array, ref_logp: Array, mask: Array) -> Array:
  """`k2 = ½·d²`: its expected gradient is exactly `∇KL(π‖π_ref)`.

  Example:
    >>> k2(jnp.array([[-1.]]), jnp.array([[-2.]]), jnp.ones((1, 1)))  # 0.5
  """
  return 0.5 * _log_ratio(logp, ref_logp, mask) ** 2 * upcast(mask)


def k3(logp: Array, ref_logp: Array, mask: Array) -> Array:
  """`k3 = e^{−d} + d − 1 ≥ 0`: unbiased KL value, gradient of KL(π_ref‖π).

  `−d` is clamped to [−20, 20] before `exp` and the value to [−10, 10] (the
  spec's bounds) so that extreme log-ratios stay finite.

  Example:
    >>> k3(jnp.array([[-1.]]), jnp.array([[-2.]]), jnp.ones((1, 1)))
    ... # e^{-1} + 1 - 1 ≈ 0.368
  """
  d = _log_ratio(logp, ref_logp, mask)
  value = jnp.exp(jnp.clip(-d, -20.0, 20.0)) + d - 1
  return jnp.clip(value, -10.0, 10.0) * upcast(mask)


def k3_st(logp: Array, ref_logp: Array, mask: Array) -> Array:
  """Value of k3, gradient of k2: `k2 − sg(k2) + sg(k3)`."""
  v2 = k2(logp, ref_logp, mask)
  return v2 - sg(v2) + sg(k3(logp, ref_logp, mask))


KL_ESTIMATORS = {'k1': k1, 'k2': k2, 'k3': k3, 'k3_st': k3_st}


def kl_in_reward(token_rewards: Array, old_logp: Array, ref_logp: Array,
                 mask: Array, *, beta: float = 0.05) -> Array:
  """PPO/RLHF placement `r_t ← r_t − β·k1(old_logp_t, ref_logp_t)`, all sg.

  The penalty then acts through the score function; on-policy REINFORCE on
  these rewards has expected gradient `∇(E[r] − β·KL(π‖π_ref))`. Default
  β = 0.05 (Tülu 3 RLVR, 8B). Ziegler et al., *Fine-Tuning Language Models
  from Human Preferences* (arXiv:1909.08593).

  Example:
    >>> kl_in_reward(jnp.array([[0., 1.]]), jnp.log(jnp.array([[.5, .5]])),
    ...              jnp.log(jnp.array([[.25, .5]])), jnp.ones((1, 2)),
    ...              beta=1.0)  # [[-log 2, 1.]]
  """
  r = jnp.where(mask > 0, upcast(token_rewards), 0)
  return sg(r - beta * k1(old_logp, ref_logp, mask))


def kl_in_loss(logp: Array, ref_logp: Array, mask: Array, *,
               beta: float = 1e-3, estimator: str = 'k3') -> Array:
  """GRPO placement: per-token `β·k(logp, ref_logp)` with gradient via logp.

  Add `reducer(kl_in_loss(...), mask)` to the loss. With `k3` the gradient is
  the forward-KL gradient `∇KL(π_ref‖π)`, with `k2` the reverse-KL one.
  """
  return beta * KL_ESTIMATORS[estimator](logp, ref_logp, mask)


def adaptive_kl_coef(beta: Array, kl: Array, *, kl_target: float,
                     k_beta: float = 0.1) -> Array:
  """Adaptive KL controller: `e = clip(KL/KL_target − 1, ±0.2)`,
  `β ← β·(1 + K_β·e)`.

  Ziegler et al., *Fine-Tuning Language Models from Human Preferences*
  (arXiv:1909.08593), with the paper's K_β = 0.1. The spec writes
  `β·(1 + K_β·e·n_steps/horizon)`; the paper has no `n_steps/horizon` factor
  (its released code uses `n_steps/horizon` in place of K_β). The paper wins:
  pass `k_beta=n_steps/horizon` to reproduce the code's schedule.

  Example:
    >>> adaptive_kl_coef(0.1, 10.0, kl_target=1.0)  # 0.1·(1 + 0.1·0.2)
  """
  err = jnp.clip(sg(kl) / kl_target - 1, -0.2, 0.2)
  return beta * (1 + k_beta * err)
