"""Policy-gradient RL: the objective over a rollout batch, and its inputs.

One objective serves every estimator of `postrain.losses.POLICY_LOSSES`
(`pg`, `ppo_clip`, `gspo`, `topr`, `w_reinforce`, `nft`): the kernel is
called with the inputs its signature names, taken from the batch:

  logp            [B, T] learner log-probs (this forward, differentiable)
  old_logp        [B, T] log-probs of the parameters that sampled, recomputed
                  by the learner before the update epochs (π_old)
  behaviour_logp  [B, T] the sampler's own log-probs (μ)
  advantages      [B] or [B, T];  rewards, correct  [B];  mask  [B, T]

plus a KL penalty to frozen reference log-probs (`kl_in_loss`), an entropy
bonus, and for PPO a scalar value head on the final hidden states trained
with the clipped value loss. Batches are built by `prepare`, which runs the
learner (and reference) forward once per rollout, outside the update epochs.
"""

import functools
import inspect

from flax import nnx
import jax.numpy as jnp

from postrain import losses
from postrain.losses import _sft

ONLINE_LOSSES = ('pg', 'ppo_clip', 'gspo', 'topr', 'w_reinforce', 'nft')


def init_value_head(embed_dim: int) -> dict:
  """A zero-initialised linear value head `V = h·w + b` over [D]."""
  return {'kernel': jnp.zeros((embed_dim,), jnp.float32),
          'bias': jnp.zeros((), jnp.float32)}


def forward(graphdef, params, batch, *, chunk_size: int = 128):
  """Token log-probs, entropies and (with a value head) values, [B, T] each.

  `params` is the LM state, or `{'lm': state, 'value': head}` for PPO.
  """
  lm, head = (params['lm'], params['value']) if 'value' in params else (
      params, None)
  model = nnx.merge(graphdef, lm)
  hidden, _ = model.features(batch['inputs'], batch['positions'],
                             segment_ids=batch['segment_ids'])
  stats = _sft.chunked_logit_stats(
      hidden, model.output_kernel(), batch['targets'],
      soft_cap=model.config.final_logit_softcap, chunk_size=chunk_size)
  out = dict(logp=_sft.token_logprobs(stats), entropy=stats['entropy'])
  if head is not None:
    out['values'] = (jnp.einsum('BTD,D->BT', hidden.astype(jnp.float32),
                                head['kernel']) + head['bias'])
  return out


def make_objective(
    graphdef,
    *,
    loss_type: str = 'ppo_clip',
    loss_kwargs: dict | None = None,
    reducer: str = 'token_mean',
    reducer_kwargs: dict | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = 'k3',
    entropy_coef: float = 0.0,
    value_coef: float = 0.0,
    value_clip: float = 0.2,
    correction: str = '',
    correction_kwargs: dict | None = None,
    chunk_size: int = 128,
):
  """`objective(params, batch, rng) -> (loss, metrics)` for online RL.

  Args:
    graphdef: the LM's `nnx.GraphDef`.
    loss_type: a key of `POLICY_LOSSES` usable online (`ONLINE_LOSSES`).
    loss_kwargs: the kernel's own hyperparameters (e.g. `eps_high`).
    reducer: a key of `REDUCERS` for the policy, KL and entropy terms.
    reducer_kwargs: e.g. `{'norm': max_new_tokens}` for Dr.GRPO's
      `sequence_mean_token_sum_norm` (rows also hold the prompt, so the
      default `L_norm = T` would count prompt positions).
    kl_coef: β of the KL-in-loss penalty (0: no reference needed).
    kl_estimator: `k1`, `k2`, `k3` or `k3_st`.
    entropy_coef: c_H; the loss gets `−c_H·reducer(H)`.
    value_coef: weight of the value loss (PPO with a value head; `params`
      must then be `{'lm': ..., 'value': ...}` and the batch carry
      `old_values` and `returns`).
    value_clip: ε_v of the clipped value loss.
    correction: '' or a key of `CORRECTIONS`: sampler–learner importance
      weights in decoupled mode (target `old_logp`, behaviour the sampler's
      `behaviour_logp`), passed as `weights` to `pg` / `ppo_clip`.
    correction_kwargs: the correction's knobs (e.g. `cap`).
    chunk_size: positions per chunk of the log-softmax.
  """
  if loss_type not in ONLINE_LOSSES:
    raise ValueError(f'loss_type={loss_type!r} is not an online policy loss; '
                     f'valid: {ONLINE_LOSSES}.')
  kernel = losses.POLICY_LOSSES[loss_type]
  names = [n for n, p in inspect.signature(kernel).parameters.items()
           if p.kind == p.POSITIONAL_OR_KEYWORD]
  kwargs = dict(loss_kwargs or {})
  if correction and 'weights' not in inspect.signature(kernel).parameters:
    raise ValueError(f'correction={correction!r} needs a loss that takes '
                     f'importance weights (pg, ppo_clip), not {loss_type!r}.')
  reduce = functools.partial(losses.REDUCERS[reducer],
                             **(reducer_kwargs or {}))

  def objective(params, batch, rng):
    del rng
    fwd = forward(graphdef, params, batch, chunk_size=chunk_size)
    mask = batch['loss_mask']
    inputs = dict(batch, logp=fwd['logp'], mask=mask)
    missing = [n for n in names if n not in inputs]
    if missing:
      raise KeyError(f'{loss_type} needs batch entries {missing}.')
    extra = {}
    if correction:
      extra['weights'], cdiag = losses.CORRECTIONS[correction](
          batch['old_logp'], batch['behaviour_logp'], mask,
          **(correction_kwargs or {}))
    per_token, diag = kernel(*(inputs[n] for n in names), **kwargs, **extra)
    policy = reduce(per_token, mask)
    loss = policy
    entropy = losses.token_mean(fwd['entropy'], mask)
    metrics = dict(policy_loss=policy, entropy=entropy,
                   loss_tokens=jnp.sum(mask),
                   tokens=jnp.sum(batch['segment_ids'] > 0).astype(
                       jnp.float32))
    metrics.update({k: losses.token_mean(v, mask) for k, v in diag.items()
                    if v.shape == mask.shape})
    if correction:
      metrics.update(
          is_weight=losses.token_mean(extra['weights'], mask),
          is_flagged=losses.token_mean(cdiag['flagged'], mask),
          is_ess=losses.effective_sample_size(extra['weights'], mask))
    if 'ref_logp' in batch:
      metrics['kl_ref'] = losses.token_mean(
          losses.KL_ESTIMATORS['k3'](fwd['logp'], batch['ref_logp'], mask),
          mask)
    if kl_coef:
      loss += reduce(losses.kl_in_loss(fwd['logp'], batch['ref_logp'], mask,
                                       beta=kl_coef, estimator=kl_estimator),
                     mask)
    if entropy_coef:
      loss -= entropy_coef * reduce(fwd['entropy'], mask)
    if value_coef:
      vloss, vdiag = losses.value_loss(fwd['values'], batch['old_values'],
                                       batch['returns'], mask,
                                       clip_eps=value_clip)
      loss += value_coef * losses.token_mean(vloss, mask)
      metrics.update(value_loss=losses.token_mean(vloss, mask),
                     explained_variance=losses.explained_variance(
                         fwd['values'], batch['returns'], mask),
                     **{k: losses.token_mean(v, mask)
                        for k, v in vdiag.items() if v.shape == mask.shape})
    return loss, metrics

  return objective


def make_prepare(
    graphdef,
    *,
    advantage: str = 'grpo',
    group_size: int,
    advantage_kwargs: dict | None = None,
    kl_in_reward: float = 0.0,
    gamma: float = 1.0,
    lam: float = 0.95,
    unlikeliness: float = 0.0,
    chunk_size: int = 128,
):
  """`prepare(params, ref_params, batch) -> batch` before the update epochs.

  Adds `old_logp` (the learner's log-probs under the sampling parameters),
  `ref_logp` (when `ref_params` is not None), `advantages` and, with a value
  head, `old_values` and `returns` by GAE on token rewards (the sequence
  reward on the last completion token, minus `kl_in_reward·k1` per token).

  Args:
    graphdef: the LM's `nnx.GraphDef`.
    advantage: a key of `ADVANTAGES` (`gae` needs a value head), or '' for
      kernels that take rewards directly (`topr`, `w_reinforce`, `nft`).
    group_size: G (rows in group layout).
    advantage_kwargs: extra keywords of the estimator (e.g. `baseline`).
    kl_in_reward: β of the KL penalty placed in the reward (PPO style).
    gamma, lam: GAE discount and λ.
    unlikeliness: β_rank of the unlikeliness reward (`REWARD_TRANSFORMS`,
      He et al. use 0.25): rewards are scaled by `1 − β_rank·rank/G`, rank
      by `old_logp` within the group, before the advantage; 0 = off.
    chunk_size: positions per chunk of the log-softmax.
  """
  fn = losses.ADVANTAGES[advantage] if advantage else None
  kwargs = dict(advantage_kwargs or {})
  if fn and 'group_size' in inspect.signature(fn).parameters:
    kwargs['group_size'] = group_size

  def prepare(params, ref_params, batch):
    fwd = forward(graphdef, params, batch, chunk_size=chunk_size)
    mask = batch['loss_mask']
    out = dict(batch, old_logp=fwd['logp'])
    if unlikeliness:
      out['rewards'] = losses.REWARD_TRANSFORMS['unlikeliness'](
          batch['rewards'], fwd['logp'], mask, group_size=group_size,
          beta_rank=unlikeliness)
    if ref_params is not None:
      ref = forward(graphdef, ref_params, batch, chunk_size=chunk_size)
      out['ref_logp'] = ref['logp']
    if advantage != 'gae':
      if fn:
        out['advantages'] = fn(out['rewards'], **kwargs)
      return out
    if 'values' not in fwd:
      raise ValueError("advantage='gae' needs a value head (PPO).")
    last = jnp.cumsum(mask, -1) == jnp.sum(mask, -1, keepdims=True)
    token_r = jnp.where(last & (mask > 0), out['rewards'][:, None], 0.0)
    if kl_in_reward:
      token_r = losses.kl_in_reward(token_r, fwd['logp'], out['ref_logp'],
                                    mask, beta=kl_in_reward)
    adv, returns = fn(token_r, fwd['values'], mask, gamma=gamma, lam=lam,
                      **kwargs)
    out.update(advantages=adv, returns=returns, old_values=fwd['values'])
    return out

  return prepare
