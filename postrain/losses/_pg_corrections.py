"""Sampler–learner mismatch corrections: truncated / masked importance weights.

The sampler's log-probs `behaviour_logp` (μ) differ from the learner's
`target_logp` even at equal weights. With per-token log-ratio
`λ_t = target_logp − behaviour_logp`:

  decoupled mode: target = old_logp, behaviour = rollout_logp (Hilton et al.,
    *Batch size-invariance for policy optimization*, arXiv:2110.00641);
  bypass mode with `pg`: target = sg(logp), behaviour = rollout_logp.

Each function returns `(weights [B, T], diagnostics)`, all stop-gradient, zero
on masked tokens; the weights multiply the per-token policy loss. Sources:
Yao et al., *Your Efficient RL Framework Secretly Brings You Off-Policy RL
Training* (blog, 2025); Liu, Li et al., *When Speed Kills Stability:
Demystifying RL Collapse from the Training-Inference Mismatch* (blog, 2025).
"""

import math

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast

Array = jax.Array
sg = jax.lax.stop_gradient



def _log_ratio(target_logp: Array, behaviour_logp: Array,
               mask: Array) -> Array:
  ok = mask > 0  # why where: padded log-probs may be -inf.
  return sg(jnp.where(ok, upcast(target_logp), 0)
            - jnp.where(ok, upcast(behaviour_logp), 0))


def _diag(lam: Array, w: Array, flagged: Array, mask: Array) -> dict:
  m = upcast(mask)
  return dict(log_ratio=lam * m, is_weight=w, flagged=flagged * m)


def tis_token(target_logp: Array, behaviour_logp: Array, mask: Array, *,
              cap: float = 2.0) -> tuple[Array, dict]:
  """Token-level truncated IS `w_t = min(exp(λ_t), C)`, clipped in log space.

  Example:
    >>> tis_token(jnp.array([[0., 5.]]), jnp.zeros((1, 2)),
    ...           jnp.ones((1, 2)))[0]  # [[1., 2.]]
  """
  lam = _log_ratio(target_logp, behaviour_logp, mask)
  w = jnp.exp(jnp.minimum(lam, math.log(cap))) * upcast(mask)
  return w, _diag(lam, w, lam > math.log(cap), mask)


def tis_seq(target_logp: Array, behaviour_logp: Array, mask: Array, *,
            cap: float = 2.0) -> tuple[Array, dict]:
  """Sequence-level truncated IS `w = min(exp(Σ_t m λ_t), C)` per token."""
  lam = _log_ratio(target_logp, behaviour_logp, mask)
  total = (lam * upcast(mask)).sum(-1, keepdims=True)
  w = jnp.exp(jnp.minimum(total, math.log(cap))) * upcast(mask)
  return w, _diag(lam, w, jnp.broadcast_to(total > math.log(cap), w.shape),
                  mask)


def mis_seq(target_logp: Array, behaviour_logp: Array, mask: Array, *,
            cap: float = 2.0, lower_bound: bool = False) -> tuple[Array, dict]:
  """Sequence-level masked IS `w = 1[exp(Σ λ) ≤ C]` (optionally `≥ 1/C`)."""
  lam = _log_ratio(target_logp, behaviour_logp, mask)
  total = (lam * upcast(mask)).sum(-1, keepdims=True)
  keep = total <= math.log(cap)
  if lower_bound:
    keep &= total >= -math.log(cap)
  w = jnp.broadcast_to(keep, lam.shape) * upcast(mask)
  return w, _diag(lam, w, jnp.broadcast_to(~keep, w.shape), mask)


def geo_filter(target_logp: Array, behaviour_logp: Array, mask: Array, *,
               low: float = 0.999, high: float = 1.001) -> tuple[Array, dict]:
  """Length-invariant filter: keep iff `low ≤ exp(mean_t λ_t) ≤ high`.

  Example:
    >>> geo_filter(jnp.array([[0., 1.]]), jnp.zeros((1, 2)),
    ...            jnp.ones((1, 2)))[0]  # [[0., 0.]] (mean λ = 0.5)
  """
  lam = _log_ratio(target_logp, behaviour_logp, mask)
  m = upcast(mask)
  mean = (lam * m).sum(-1, keepdims=True) / jnp.maximum(
      m.sum(-1, keepdims=True), 1)
  keep = (mean >= math.log(low)) & (mean <= math.log(high))
  w = jnp.broadcast_to(keep, lam.shape) * m
  return w, _diag(lam, w, jnp.broadcast_to(~keep, w.shape), mask)


CORRECTIONS = {
    'tis_token': tis_token,
    'tis_seq': tis_seq,
    'mis_seq': mis_seq,
    'geo_filter': geo_filter,
}


def effective_sample_size(weights: Array, mask: Array) -> Array:
  """Normalised ESS `(Σw)²/(N·Σw²)` over valid tokens (scalar in [0, 1])."""
  m = upcast(mask)
  w = upcast(weights) * m
  den = m.sum() * (w ** 2).sum()
  return jnp.where(den > 0, w.sum() ** 2 / jnp.where(den > 0, den, 1), 0)
