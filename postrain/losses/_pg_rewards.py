"""Reward functions and transforms applied before advantages (all sg).

Sequence rewards are `[B]` in group layout (`B = P·G`); process (step)
rewards are `[B, K]` with a prefix mask over the K steps.
"""

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast

Array = jax.Array
sg = jax.lax.stop_gradient



def verifier_reward(verified: Array, *, scale: float = 1.0,
                    partial: Array | None = None,
                    partial_reward: float = 0.0) -> Array:
  """`r = α·1[verified]`, plus `partial_reward` where only `partial` holds.

  ReFT (arXiv:2401.08967) uses `partial_reward=0.1` for an extractable but
  wrong answer; Tülu 3 RLVR uses α = 10.

  Example:
    >>> verifier_reward(jnp.array([True, False]))  # [1., 0.]
  """
  v = upcast(sg(verified))
  r = scale * v
  if partial is not None:
    r = r + partial_reward * (1 - v) * upcast(sg(partial))
  return r


def rlcr_reward(correct: Array, confidence: Array, parsed: Array, *,
                unparsable_reward: float = -1.0) -> Array:
  """Brier-calibrated reward `R = c − (q − c)²`.

  Damani et al., *Beyond Binary Rewards: Training LMs to Reason About Their
  Uncertainty* (arXiv:2507.16806). A proper scoring rule: for `c ~ Bern(p)`,
  `argmax_q E[R] = p`. Unparsable confidence gets `unparsable_reward` (a
  library choice, not from the paper).

  Example:
    >>> rlcr_reward(jnp.array([1.]), jnp.array([.5]), jnp.array([True]))
    ... # 1 - 0.25 = 0.75
  """
  c = upcast(sg(correct))
  q = jnp.clip(upcast(sg(confidence)), 0, 1)
  return jnp.where(parsed, c - (q - c) ** 2, unparsable_reward)


def unlikeliness_reward(rewards: Array, old_logp: Array, mask: Array, *,
                        group_size: int, beta_rank: float = 0.25) -> Array:
  """Rank penalty `r̃_i = r_i·(1 − β_rank·rank_i/G)`, then `grpo` on r̃.

  `rank_i ∈ {0..G−1}` ascending by length-mean `old_logp` within the group
  (0 = least likely), ties broken by index. He, Fried, Welleck, *Rewarding
  the Unlikely: Lifting GRPO Beyond Distribution Sharpening*
  (arXiv:2506.02355). As in the authors' released code, ranks are taken over
  all G samples of the group, correct or not (wrong samples have r = 0, so
  their rank only shifts the ranks of the correct ones).

  Example:
    >>> unlikeliness_reward(jnp.ones(2), jnp.array([[-1.], [-2.]]),
    ...                     jnp.ones((2, 1)), group_size=2)  # [.875, 1.]
  """
  m = upcast(mask)
  mean_lp = (jnp.where(m > 0, upcast(sg(old_logp)), 0) * m).sum(-1)
  mean_lp = (mean_lp / jnp.maximum(m.sum(-1), 1)).reshape(-1, group_size)
  a, b = mean_lp[:, :, None], mean_lp[:, None, :]
  idx = jnp.arange(group_size)
  before = (b < a) | ((b == a) & (idx[None, :] < idx[:, None])[None])
  rank = before.sum(-1).reshape(-1)
  return upcast(sg(rewards)) * (1 - beta_rank * rank / group_size)


def step_reward_clip(step_rewards: Array, mask: Array, *,
                     eta: float) -> Array:
  """Clip transform `r̃_k = min(p_k − η, 0)` (every step reward ≤ 0).

  Gao et al., *On Designing Effective RL Reward at Training Time for LLM
  Reasoning* (arXiv:2410.15115). The spec gives no default for η.

  Example:
    >>> step_reward_clip(jnp.array([[.9, .2]]), jnp.ones((1, 2)), eta=.5)
    ... # [[0., -0.3]]
  """
  p = jnp.where(mask > 0, upcast(sg(step_rewards)), 0)
  return jnp.minimum(p - eta, 0) * upcast(mask)


def step_reward_delta(step_rewards: Array, mask: Array) -> Array:
  """Delta transform `r̃_k = p_k − p_{k+1}` (k < K), `r̃_K = p_K`.

  The sum telescopes to `p_1`, so the return is bounded whatever the number
  of steps. Gao et al. (arXiv:2410.15115). `mask` must be a prefix mask.

  Example:
    >>> step_reward_delta(jnp.array([[.9, .2]]), jnp.ones((1, 2)))
    ... # [[.7, .2]]
  """
  m = upcast(mask)
  p = jnp.where(m > 0, upcast(sg(step_rewards)), 0)
  nxt = jnp.pad(p[:, 1:] * m[:, 1:], ((0, 0), (0, 1)))
  return (p - nxt) * m


def log_sigmoid_centring(rewards: Array, ref_rewards: Array) -> Array:
  """LSC `u = logσ(r − r_ref)` ≤ 0; summing over rewards is a soft AND.

  Wang et al., *Transforming and Combining Rewards for Aligning Large
  Language Models* (arXiv:2402.00742).

  Example:
    >>> log_sigmoid_centring(jnp.array([0.]), jnp.array([0.]))  # -log 2
  """
  return jax.nn.log_sigmoid(upcast(sg(rewards)) - upcast(sg(ref_rewards)))


REWARD_TRANSFORMS = {
    'clip': step_reward_clip,
    'delta': step_reward_delta,
    'unlikeliness': unlikeliness_reward,
    'rlcr': rlcr_reward,
    'lsc': log_sigmoid_centring,
}
