"""Policy-gradient losses: pg, PPO clip, value loss, GSPO, TOPR, W-REINFORCE,
NFT, REDI, and the entropy bonus.

Every loss is per token `[B, T]` (REDI: per example `[B]`), zero on masked
tokens, to be *minimised* after a reducer from `_reduce`. Policy losses
return `(loss, diagnostics)`, the diagnostics unreduced `[B, T]` arrays (reduce
them with `token_mean`). Advantages, rewards and importance weights are
wrapped in `stop_gradient`; gradients flow only through `logp`.
"""

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast

Array = jax.Array
sg = jax.lax.stop_gradient



def _masked(x: Array, mask: Array) -> Array:
  # why where: padded log-probs may be ±inf; `inf·0` would give NaN.
  return jnp.where(mask > 0, upcast(x), 0)


def _per_token(a: Array, mask: Array) -> Array:
  """Broadcast a per-sequence [B] array to [B, T]; pass [B, T] through."""
  a = upcast(sg(a))
  return jnp.broadcast_to(a[:, None] if a.ndim == 1 else a, mask.shape)


def _seq_sum(x: Array, mask: Array) -> Array:
  return (_masked(x, mask) * mask).sum(-1)


def _clipped_surrogate(ratio, adv, eps_low, eps_high):
  clipped = jnp.clip(ratio, 1 - eps_low, 1 + eps_high)
  loss = jnp.maximum(-adv * ratio, -adv * clipped)
  return loss, -adv * clipped > -adv * ratio


def pg(logp: Array, advantages: Array, mask: Array, *,
       weights: Array | None = None) -> tuple[Array, dict]:
  """Plain surrogate `ℓ_t = −sg(w_t)·sg(A_t)·logπ_θ(y_t)`.

  On-policy its gradient is the REINFORCE gradient (Williams, 1992).

  Args:
    logp: [B, T] current-policy token log-probs (differentiable).
    advantages: [B] or [B, T].
    mask: [B, T].
    weights: optional [B, T] importance weights (e.g. from `_pg_corrections`).

  Example:
    >>> pg(jnp.array([[-1.]]), jnp.array([2.]), jnp.ones((1, 1)))[0]  # 2.
  """
  w = 1.0 if weights is None else _per_token(weights, mask)
  loss = -w * _per_token(advantages, mask) * _masked(logp, mask)
  return loss * mask, {}


def ppo_clip(logp: Array, old_logp: Array, advantages: Array, mask: Array, *,
             eps_low: float = 0.2, eps_high: float = 0.2,
             dual_clip: float | None = 3.0,
             weights: Array | None = None) -> tuple[Array, dict]:
  """PPO clipped surrogate with asymmetric (clip-higher) and dual clipping.

  `ρ = exp(clamp(logp − old_logp, ±20))`,
  `ℓ = max(−Aρ, −A·clip(ρ, 1−ε_low, 1+ε_high))`, and for `A < 0`
  `ℓ ← min(ℓ, −A·c)`. Schulman et al., *Proximal Policy Optimization
  Algorithms* (arXiv:1707.06347); dual clip: Ye et al., *Mastering Complex
  Control in MOBA Games with Deep Reinforcement Learning* (arXiv:1912.09729).

  Args:
    logp, old_logp: [B, T] current and π_old token log-probs (bypass mode:
      pass `rollout_logp` as `old_logp`).
    advantages: [B] or [B, T].
    mask: [B, T].
    eps_low, eps_high: clip range (DAPO clip-higher: `eps_high=0.28`).
    dual_clip: c > 1, or None to disable.
    weights: optional [B, T] IS weights (decoupled mode).

  Returns:
    `(loss [B, T], diagnostics)` with `pg_clipfrac`, `pg_clipfrac_lower`
    (0/1 indicators), `ratio` and `ppo_kl = old_logp − logp`, all [B, T].

  Example:
    >>> ppo_clip(jnp.log(jnp.array([[1.5]])), jnp.zeros((1, 1)),
    ...          jnp.array([1.]), jnp.ones((1, 1)))[0]  # -1.2 (clipped)
  """
  if dual_clip is not None and dual_clip <= 1:
    raise ValueError(f'dual_clip must be > 1, got {dual_clip}')
  m = upcast(mask)
  log_ratio = _masked(logp, mask) - _masked(old_logp, mask)
  ratio = jnp.exp(jnp.clip(log_ratio, -20.0, 20.0))
  adv = _per_token(advantages, mask)
  loss, clipped = _clipped_surrogate(ratio, adv, eps_low, eps_high)
  lower = jnp.zeros_like(clipped)
  if dual_clip is not None:
    lower = (adv < 0) & (loss > -adv * dual_clip)
    loss = jnp.where(lower, -adv * dual_clip, loss)
  w = 1.0 if weights is None else _per_token(weights, mask)
  diag = dict(pg_clipfrac=clipped * m, pg_clipfrac_lower=lower * m,
              ratio=sg(ratio) * m, ppo_kl=-sg(log_ratio) * m)
  return w * loss * m, diag


def value_loss(values: Array, old_values: Array, returns: Array,
               mask: Array, *, clip_eps: float = 0.2) -> tuple[Array, dict]:
  """Clipped value loss `½·max((V − R)², (clip(V, V_old ± ε_v) − R)²)`.

  Multiply by the recipe's value coefficient (Tülu 3 RLVR: 0.1).

  Returns:
    `(loss [B, T], {'vf_clipfrac': [B, T]})`.

  Example:
    >>> value_loss(jnp.array([[1.]]), jnp.array([[1.]]), jnp.array([[0.]]),
    ...            jnp.ones((1, 1)))[0]  # 0.5
  """
  v, v_old, ret = (_masked(x, mask) for x in (values, old_values, returns))
  v_clip = jnp.clip(v, v_old - clip_eps, v_old + clip_eps)
  plain, clipped = (v - ret) ** 2, (v_clip - ret) ** 2
  m = upcast(mask)
  return 0.5 * jnp.maximum(plain, clipped) * m, dict(
      vf_clipfrac=(clipped > plain) * m)


def explained_variance(values: Array, returns: Array, mask: Array) -> Array:
  """Metric `1 − Var(R − V)/Var(R)` over valid tokens (scalar)."""
  m = upcast(mask)
  n = jnp.maximum(m.sum(), 1)
  var = lambda x: (m * (x - (m * x).sum() / n) ** 2).sum() / n
  v, ret = _masked(values, mask), _masked(returns, mask)
  den = var(ret)
  return jnp.where(den > 0, 1 - var(ret - v) / jnp.where(den > 0, den, 1), 0)


def gspo(logp: Array, old_logp: Array, advantages: Array, mask: Array, *,
         eps_low: float = 3e-4, eps_high: float = 4e-4) -> tuple[Array, dict]:
  """GSPO: clipped surrogate on the length-normalised sequence ratio.

  `log s_i = (1/n_i) Σ_t m (logp − old_logp)`; token form
  `log s_it = sg(log s_i) + logp_t − sg(logp_t)` (clamped at 10 before exp),
  `ℓ_it = max(−A_i s_it, −A_i clip(s_it, 1−ε_low, 1+ε_high))`; reduce with
  `sequence_mean_token_mean`. Zheng et al., *Group Sequence Policy
  Optimization* (arXiv:2507.18071).

  Args:
    logp, old_logp: [B, T]; advantages: [B] (group advantages, e.g. `grpo`);
    mask: [B, T].

  Returns:
    `(loss [B, T], {'pg_clipfrac', 'ratio'})`, ratio = s_i per token.

  Example:
    >>> gspo(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.array([1.]),
    ...      jnp.ones((1, 2)))[0]  # [[-1., -1.]]
  """
  m = upcast(mask)
  lp = _masked(logp, mask)
  n = jnp.maximum(m.sum(-1), 1)
  log_s = _seq_sum(lp - _masked(old_logp, mask), mask) / n
  log_st = sg(log_s)[:, None] + lp - sg(lp)
  s = jnp.exp(jnp.minimum(log_st, 10.0))
  loss, clipped = _clipped_surrogate(s, _per_token(advantages, mask),
                                     eps_low, eps_high)
  return loss * m, dict(pg_clipfrac=clipped * m, ratio=sg(s) * m)


def topr(logp: Array, behaviour_logp: Array, rewards: Array, mask: Array, *,
         baseline: float = 0.0) -> tuple[Array, dict]:
  """Tapered off-policy REINFORCE: `ℓ_i = −sg(w_i)·(R_i − c)·logπ_θ(y_i)`.

  `w_i = 1` if `R_i ≥ c`, else `min(1, π_θ(y_i)/μ(y_i))`, computed in log
  space (`exp(min(log-ratio, 0))`, no overflow). Le Roux, Bellemare et al.,
  *Tapered Off-Policy REINFORCE: Stable and Efficient Reinforcement Learning
  for LLMs* (arXiv:2503.14286). Per token; `sequence_mean_token_sum` gives
  the sequence-level loss.

  The positive/negative split is on the sign of `R − c` (the spec's form);
  the paper's update splits on the sign of R. The two coincide for ±1
  rewards with |c| < 1, the paper's setting (not checked for other rewards).

  Args:
    logp, behaviour_logp: [B, T] learner and behaviour (μ) token log-probs.
    rewards: [B] sequence rewards R.
    mask: [B, T].
    baseline: c; with ±1 rewards it sets the effective positive fraction
      `p(1−c)/(1 + (1−2p)c)`.

  Returns:
    `(loss [B, T], {'is_weight': [B, T]})`.

  Example:
    >>> topr(jnp.array([[-1.]]), jnp.array([[-1.]]), jnp.array([1.]),
    ...      jnp.ones((1, 1)))[0]  # [[1.]]
  """
  adv = upcast(sg(rewards)) - baseline
  log_ratio = sg(_seq_sum(_masked(logp, mask) - _masked(behaviour_logp, mask),
                          mask))
  w = jnp.where(adv >= 0, 1.0, jnp.exp(jnp.minimum(log_ratio, 0.0)))
  loss, _ = pg(logp, w * adv, mask)
  return loss, dict(is_weight=_per_token(w, mask) * upcast(mask))


def w_reinforce(logp: Array, rewards: Array, mask: Array, *,
                lam: float = 0.1, neg_weight: float = 1.0
                ) -> tuple[Array, dict]:
  """W-REINFORCE `ℓ = λ·PSR + NSR` on ±1 rewards.

  `PSR = −1[r=+1]·logπ(y)`, `NSR = +1[r=−1]·logπ(y)`. `lam=1` is REINFORCE
  with ±1 rewards; `(lam, neg_weight) = (1, 0)` is PSR alone, `(0, 1)` NSR.
  Zhu et al., *The Surprising Effectiveness of Negative Reinforcement in LLM
  Reasoning* (arXiv:2506.01347). In expectation the gradient is
  `(1+λ)·∇P(correct)`.

  Args:
    logp: [B, T]; rewards: [B] in {+1, −1}; mask: [B, T].
    lam: weight λ of PSR; neg_weight: weight of NSR.

  Returns:
    `(loss [B, T], {})`.

  Example:
    >>> w_reinforce(jnp.array([[-1.]]), jnp.array([-1.]),
    ...             jnp.ones((1, 1)))[0]  # [[-1.]]
  """
  r = upcast(sg(rewards))
  adv = lam * (r > 0) - neg_weight * (r < 0)
  return pg(logp, adv, mask)


def nft(logp: Array, old_logp: Array, correct: Array, mask: Array, *,
        group_size: int, neg_weight: float = 1.0, eps_pos: float = 1e-12,
        eps_neg: float = 1e-6, normalize: int = 1, acc_min: float = 0.02,
        acc_max: float = 0.98) -> tuple[Array, dict]:
  """Negative-aware fine-tuning (NFT), per token.

  `R_t = exp(min(logp − old_logp, 10))`, `r̂_q` = group accuracy clipped to
  [0.02, 0.98], `cl(x, ε) = x + sg(max(x, ε) − x)`. Correct:
  `−log cl(R_t, ε₊)`; incorrect: `−λ_neg·log cl((1 − r̂R_t)/(1 − r̂), ε₋)`;
  every token weighted by `1 − r̂` (`normalize=1`) or `sqrt((1 − r̂)/r̂)`
  (`normalize=2`). Chen et al., *Bridging Supervised Learning and
  Reinforcement Learning in Math Reasoning* (arXiv:2505.18116). At `R = 1` the
  gradient weights are `−(1 − r̂)` / `+r̂`: exactly `dr_grpo`. The form matches
  the authors' released code (NVlabs/NFT); the clamp defaults ε₊, ε₋ are the
  spec's and were not confirmed against the paper.

  Args:
    logp, old_logp: [B, T]; correct: [B] 0/1 in group layout; mask: [B, T].
    group_size: G, to compute r̂ per group under π_old.

  Returns:
    `(loss [B, T], {'ratio': [B, T]})`.

  Example:
    >>> nft(jnp.zeros((2, 1)), jnp.zeros((2, 1)), jnp.array([1., 0.]),
    ...     jnp.ones((2, 1)), group_size=2)[0]  # [[0.], [0.]]
  """
  c = upcast(sg(correct)).reshape(-1, group_size)
  acc = jnp.clip(c.mean(-1, keepdims=True), acc_min, acc_max)
  acc = jnp.broadcast_to(acc, c.shape).reshape(-1)[:, None]
  log_ratio = _masked(logp, mask) - _masked(old_logp, mask)
  ratio = jnp.exp(jnp.minimum(log_ratio, 10.0))
  # why `sg(max) + (x − sg(x))` rather than `x + sg(max − x)`: the same
  # straight-through clamp, without cancellation when x ≪ ε (value exact).
  cl = lambda x, eps: sg(jnp.maximum(x, eps)) + (x - sg(x))
  pos = -jnp.log(cl(ratio, eps_pos))
  neg = -neg_weight * jnp.log(cl((1 - acc * ratio) / (1 - acc), eps_neg))
  scale = 1 - acc if normalize == 1 else jnp.sqrt((1 - acc) / acc)
  loss = jnp.where(_per_token(correct, mask) > 0, pos, neg) * scale
  return loss * mask, dict(ratio=sg(ratio) * mask)


def redi(logp_pos: Array, mask_pos: Array, logp_neg: Array, mask_neg: Array,
         *, alpha_pos: float = 1.0, alpha_neg: float = 0.8) -> Array:
  """REDI, reference-free and length-normalised, per example [B].

  `ℓ = −α⁺·logπ(y_w)/|y_w| + α⁻·logπ(y_l)/|y_l|`. Xu et al., *Harnessing
  Negative Signals: Reinforcement Distillation from Teacher Data for LLM
  Reasoning* (arXiv:2505.24850). Reduce with `example_mean`. The optional
  negative re-weighting `exp(γ·logπ(y_l)/|y_l|)` is not implemented.

  Args:
    logp_pos, mask_pos: [B, T] chosen (correct) teacher response.
    logp_neg, mask_neg: [B, T'] rejected (wrong) teacher response.

  Example:
    >>> redi(jnp.array([[-1., -1.]]), jnp.ones((1, 2)),
    ...      jnp.array([[-2.]]), jnp.ones((1, 1)))  # 1 - 1.6 = -0.6
  """
  mean = lambda lp, m: _seq_sum(lp, m) / jnp.maximum(upcast(m).sum(-1), 1)
  return (-alpha_pos * mean(logp_pos, mask_pos)
          + alpha_neg * mean(logp_neg, mask_neg))


def entropy(logits: Array, mask: Array, *,
            chunk_size: int | None = None) -> Array:
  """Token entropy `H = logsumexp(z) − Σ_v softmax(z)_v z_v`, [B, T].

  Streams over V in chunks (running max, Σe^{z−m}, Σe^{z−m}z) so that only a
  `[B, T, chunk]` float32 block is live. The bonus is `−c_H·reducer(H)`.

  Example:
    >>> entropy(jnp.zeros((1, 1, 4)), jnp.ones((1, 1)))  # log 4
  """
  b, t, v = logits.shape
  c = v if chunk_size is None else chunk_size
  if v % c:
    raise ValueError(f'vocab {v} is not a multiple of chunk_size {c}')
  chunks = jnp.moveaxis(logits.reshape(b, t, v // c, c), 2, 0)

  def step(carry, z):
    mx, s, sz = carry
    # why: -inf logits (banned tokens) would give 0·(−inf) = NaN below.
    z = jnp.maximum(upcast(z), jnp.finfo(mx.dtype).min)
    new = jnp.maximum(mx, z.max(-1))
    e = jnp.exp(z - new[..., None])
    scale = jnp.exp(mx - new)  # why: rescale sums to the new running max.
    return (new, s * scale + e.sum(-1), sz * scale + (e * z).sum(-1)), None

  init = jnp.full((b, t), -jnp.inf, upcast(logits[..., :1]).dtype)
  zero = jnp.zeros_like(init)
  (mx, s, sz), _ = jax.lax.scan(step, (init, zero, zero), chunks)
  h = mx + jnp.log(s) - sz / s
  return jnp.where(mask > 0, h, 0) * upcast(mask)


POLICY_LOSSES = {
    'pg': pg,
    'ppo_clip': ppo_clip,
    'gspo': gspo,
    'topr': topr,
    'w_reinforce': w_reinforce,
    'nft': nft,
    'redi': redi,
}
