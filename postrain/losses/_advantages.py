"""Advantage estimators for policy-gradient training.

Sequence rewards `r [B]` come in group layout: `B = P·G` rows, the G samples
of one prompt contiguous (`r.reshape(P, G)`). All advantages are constants
for the policy gradient (wrapped in `stop_gradient`). Token-level advantages
(`gae`) take an explicit `mask [B, T]`.
"""

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast

Array = jax.Array
sg = jax.lax.stop_gradient



def _groups(rewards: Array, group_size: int) -> Array:
  if rewards.shape[0] % group_size:
    raise ValueError(f'batch {rewards.shape[0]} is not a multiple of '
                     f'group_size {group_size}')
  r = upcast(sg(rewards)).reshape(-1, group_size)
  # why shift by the first member: group advantages are shift-invariant, and
  # an all-equal group then gives exactly 0 (not a rounding residue).
  return r - r[:, :1]


def reinforce(rewards: Array) -> Array:
  """No baseline: `A_i = r_i`.

  Williams, *Simple Statistical Gradient-Following Algorithms for
  Connectionist Reinforcement Learning* (Machine Learning, 1992).

  Example:
    >>> reinforce(jnp.array([1., 0.]))  # [1., 0.]
  """
  return upcast(sg(rewards))


def reinforce_baseline(rewards: Array, baseline: Array | float = 0.0) -> Array:
  """Fixed baseline `A_i = r_i − b`, b independent of the current samples.

  Example:
    >>> reinforce_baseline(jnp.array([1., 0.]), 0.5)  # [0.5, -0.5]
  """
  return upcast(sg(rewards)) - sg(baseline)


def ema_baseline(baseline: Array, rewards: Array, *,
                 decay: float = 0.01) -> Array:
  """Baseline update applied after the step: `b ← (1−κ)·b + κ·mean(r)`."""
  return (1 - decay) * baseline + decay * jnp.mean(upcast(sg(rewards)))


def rloo(rewards: Array, *, group_size: int) -> Array:
  """Leave-one-out baseline `A_i = r_i − (1/(G−1)) Σ_{j≠i} r_j` per group.

  Ahmadian et al., *Back to Basics: Revisiting REINFORCE Style Optimization
  for Learning from Human Feedback in LLMs* (arXiv:2402.14740).

  Example:
    >>> rloo(jnp.array([1., 0., 0., 1.]), group_size=2)  # [1, -1, -1, 1]
  """
  if group_size < 2:
    raise ValueError(f'rloo needs group_size >= 2, got {group_size}')
  r = _groups(rewards, group_size)
  others = (r.sum(-1, keepdims=True) - r) / (group_size - 1)
  return (r - others).reshape(-1)


def dr_grpo(rewards: Array, *, group_size: int) -> Array:
  """Mean-only group advantage `A_i = r_i − mean_G r` (= (G−1)/G · rloo).

  Liu et al., *Understanding R1-Zero-Like Training: A Critical Perspective*
  (arXiv:2503.20783).

  Example:
    >>> dr_grpo(jnp.array([1., 0.]), group_size=2)  # [0.5, -0.5]
  """
  r = _groups(rewards, group_size)
  return (r - r.mean(-1, keepdims=True)).reshape(-1)


def grpo(rewards: Array, *, group_size: int, eps: float = 1e-6,
         ddof: int = 1) -> Array:
  """Group z-score `A_i = (r_i − mean_G r) / (std_G r + ε)`.

  Shao et al., *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in
  Open Language Models* (arXiv:2402.03300). `ddof=1` by default (the spec's
  choice; implementations differ). Not an unbiased estimator of ∇E[r].

  Example:
    >>> grpo(jnp.array([1., 0.]), group_size=2)  # ≈ [0.707, -0.707]
  """
  r = _groups(rewards, group_size)
  std = jnp.std(r, axis=-1, keepdims=True, ddof=ddof)
  return ((r - r.mean(-1, keepdims=True)) / (std + eps)).reshape(-1)


def zero_variance_groups(rewards: Array, *, group_size: int) -> Array:
  """Bool [B]: the row's group has all-equal rewards (zero advantage).

  DAPO dynamic sampling (Yu et al., arXiv:2503.14476) drops these rows from
  token counts: multiply the mask by `~zero_variance_groups(...)[:, None]`.
  """
  r = _groups(rewards, group_size)
  same = jnp.all(r == r[:, :1], axis=-1, keepdims=True)
  return jnp.broadcast_to(same, r.shape).reshape(-1)


def whiten(x: Array, mask: Array, *, eps: float = 1e-8,
           axis_name: str | None = None) -> Array:
  """`(x − mean) / (std + ε)` over valid tokens of the (global) batch."""
  m = upcast(mask)
  x = jnp.where(m > 0, upcast(x), 0)
  psum = (lambda v: v) if axis_name is None else (
      lambda v: jax.lax.psum(v, axis_name))
  n = jnp.maximum(psum(m.sum()), 1)
  mean = psum(x.sum()) / n
  var = psum((m * (x - mean) ** 2).sum()) / n
  return (x - mean) / (jnp.sqrt(var) + eps) * m


def gae(rewards: Array, values: Array, mask: Array, *, gamma: float = 1.0,
        lam: float = 0.95, whiten_advantages: bool = True,
        axis_name: str | None = None) -> tuple[Array, Array]:
  """Generalised advantage estimation with masked tokens carried through.

  `δ_t = r_t + γ·V_{t+1} − V_t`, `A_t = δ_t + γλ·A_{t+1}`, `R_t = A_t + V_t`,
  where `t+1` is the next *valid* token and `V = 0` after the last one; then
  A is whitened over valid tokens. Schulman et al., *High-Dimensional
  Continuous Control Using Generalized Advantage Estimation*
  (arXiv:1506.02438).

  Args:
    rewards: [B, T] token rewards (task reward on the last valid token, plus
      any KL-in-reward term).
    values: [B, T] value estimates.
    mask: [B, T] valid tokens.

  Returns:
    `(advantages, returns)`, both [B, T], zero on masked tokens; returns are
    computed before whitening.

  Example:
    >>> gae(jnp.array([[0., 1.]]), jnp.zeros((1, 2)), jnp.ones((1, 2)),
    ...     lam=1.0, whiten_advantages=False)  # A = R = [[1., 1.]]
  """
  m = upcast(mask)
  r, v = (jnp.where(m > 0, upcast(sg(a)), 0) for a in (rewards, values))

  def step(carry, xs):
    next_v, next_a = carry
    r_t, v_t, m_t = xs
    a_t = r_t + gamma * next_v - v_t + gamma * lam * next_a
    keep = m_t > 0  # why: masked tokens pass the running values through.
    carry = (jnp.where(keep, v_t, next_v), jnp.where(keep, a_t, next_a))
    return carry, jnp.where(keep, a_t, 0)

  zeros = jnp.zeros(r.shape[:1], r.dtype)
  _, adv = jax.lax.scan(step, (zeros, zeros), (r.T, v.T, m.T), reverse=True)
  adv = adv.T
  returns = (adv + v) * m
  if whiten_advantages:
    adv = whiten(adv, m, axis_name=axis_name)
  return adv, returns


ADVANTAGES = {
    'reinforce': reinforce,
    'reinforce_baseline': reinforce_baseline,
    'rloo': rloo,
    'grpo': grpo,
    'dr_grpo': dr_grpo,
    'gae': gae,
}
