"""Online RL: prompts → G samples → rewards → advantages → update epochs."""

import jax
import numpy as np

from experiments import builders
from experiments.phases import _common
from experiments.phases import rm as rm_phase
from postrain import data
from postrain import recipes



def _reward_registry(task: str) -> dict:
  """Reward functions `fn(completion, record) -> float` of a task."""
  verify = builders.verifier(task)
  out = {}
  if verify is not None:  # 1 if the task's verifier accepts, else 0.
    out['correct'] = lambda text, r: float(verify(text, r))
  if task == 'arithmetic':  # 1 if an answer can be parsed at all.
    out['format'] = lambda text, r: float(
        data.extract_answer(text) is not None)
  return out


def reward_fns(spec: str, task: str = 'arithmetic', *,
               reward_model=None) -> dict:
  """Parses `config.rl.rewards`, e.g. `'correct:1,format:0.1'` or `'rm:1'`.

  `rm` is `reward_model` (a `RewardFn`, from `config.rl.reward_model`).
  """
  registry, out = _reward_registry(task), {}
  if reward_model is not None:
    registry['rm'] = reward_model
  for item in filter(None, spec.split(',')):
    name, _, weight = item.partition(':')
    if name == 'rm' and reward_model is None:
      raise ValueError('config.rl.rewards names rm: set config.rl.reward_model'
                       ' to the workdir of a reward_model run.')
    if name not in registry:
      raise ValueError(f'config.rl.rewards: unknown reward {name!r} for task '
                       f'{task!r}; valid: {sorted(registry)}.')
    out[name] = (registry[name], float(weight or 1.0))
  if not out:
    raise ValueError('config.rl.rewards is empty; e.g. "correct:1".')
  if reward_model is not None and 'rm' not in out:
    raise ValueError('config.rl.reward_model is set but config.rl.rewards '
                     'does not use it: add rm:WEIGHT.')
  return out


class Rl(_common.Phase):
  """GRPO, RLOO, REINFORCE, PPO (value head), TOPR, W-REINFORCE, NFT, GSPO."""

  def __init__(self, ctx):
    super().__init__(ctx)
    c, rl = ctx.config, ctx.config.rl
    rows = rl.prompts_per_step * rl.group_size
    _common.check_divisible(
        'config.rl.prompts_per_step × group_size (rows per step)', rows,
        rl.num_minibatches, 'Choose rl.num_minibatches dividing it.')
    _common.check_divisible(
        'rows per minibatch', rows // rl.num_minibatches,
        ctx.mesh.shape['data'] * ctx.mesh.shape['fsdp'],
        'Each minibatch is split over the data-parallel devices.')
    if rl.advantage in ('rloo', 'grpo', 'dr_grpo') and rl.group_size < 2:
      raise ValueError(f'config.rl.advantage={rl.advantage!r} compares the '
                       'samples of a group: set rl.group_size >= 2.')
    takes_adv = rl.loss_type in ('pg', 'ppo_clip', 'gspo')
    if takes_adv != bool(rl.advantage):
      raise ValueError(
          f'config.rl.loss_type={rl.loss_type!r} ' + (
              'needs an advantage estimator (rl.advantage).' if takes_adv
              else "uses rewards directly: set rl.advantage=''."))
    self._ppo = rl.advantage == 'gae'
    if self._ppo != (rl.value_coef > 0):
      raise ValueError('config.rl: advantage=gae (PPO) and value_coef > 0 go '
                       'together: the value head is trained iff GAE uses it.')
    rm = (rm_phase.load_reward_fn(ctx, rl.reward_model,
                                  max_len=c.data.max_len + rl.max_new_tokens)
          if rl.get('reward_model') else None)
    self._rewards = reward_fns(rl.rewards, c.data.task, reward_model=rm)
    self._prompts = _common.PromptStream(ctx.train_src, rl.prompts_per_step,
                                         seed=c.seed)
    self._needs_ref = bool(rl.kl_coef or rl.kl_in_reward)
    self.updates_per_step = rl.epochs * rl.num_minibatches
    self.samples = True
    loss_kwargs = dict(rl.loss_kwargs)
    if rl.loss_type == 'nft':
      loss_kwargs['group_size'] = rl.group_size
    self.objective = recipes.rl.make_objective(
        ctx.graphdef, loss_type=rl.loss_type, loss_kwargs=loss_kwargs,
        reducer=rl.reducer, reducer_kwargs=(
            {'norm': rl.max_new_tokens}
            if rl.reducer == 'sequence_mean_token_sum_norm' else None),
        kl_coef=rl.kl_coef, kl_estimator=rl.kl_estimator,
        entropy_coef=rl.entropy_coef, value_coef=rl.value_coef,
        value_clip=rl.value_clip, correction=rl.correction,
        correction_kwargs=dict(rl.correction_kwargs))
    self._prepare = jax.jit(recipes.rl.make_prepare(
        ctx.graphdef, advantage=rl.advantage, group_size=rl.group_size,
        advantage_kwargs=dict(rl.advantage_kwargs),
        kl_in_reward=rl.kl_in_reward, gamma=rl.gamma, lam=rl.lam,
        unlikeliness=rl.get('unlikeliness', 0.0)))

  def init_params(self, lm_params, rng):
    del rng
    if not self._ppo:
      return lm_params
    return {'lm': lm_params,
            'value': recipes.rl.init_value_head(self.ctx.model_cfg.embed_dim)}

  def lm_params(self, params):
    return params['lm'] if self._ppo else params

  def init_extra(self, params):
    return {'ref': self.lm_params(params)} if self._needs_ref else {}

  def batches(self, state, rng):
    ctx, rl = self.ctx, self.ctx.config.rl
    sample_rng, perm_rng = jax.random.split(rng)
    records = self._prompts.next()
    out = recipes.rollout(
        ctx.graphdef, self.lm_params(state.params), ctx.tokenizer,
        [ctx.fmt(r)[0] for r in records], records, sample_rng,
        group_size=rl.group_size, max_prompt_len=ctx.config.data.max_len,
        max_new_tokens=rl.max_new_tokens, temperature=rl.temperature)
    rewards, parts, errors = recipes.score_completions(
        out.texts, out.records, self._rewards)
    batch = recipes.assemble(out, pad_id=ctx.tokenizer.pad_id)
    batch.update(rewards=rewards, correct=(parts.get(
        'correct', rewards > 0) > 0).astype(np.float32))
    if rl.pm1_rewards:  # ±1 rewards (W-REINFORCE, TOPR): 2·correct − 1.
      batch['rewards'] = 2 * batch['correct'] - 1
    batch = _common.host(self._prepare(
        state.params, state.extra.get('ref'), jax.tree.map(ctx.put, batch)))
    metrics = _rollout_metrics(out, batch, parts, errors, rl.group_size)
    return _common.split_minibatches(batch, rl.num_minibatches, rl.epochs,
                                     perm_rng), metrics

  def get_state(self):
    return self._prompts.get_state()

  def set_state(self, state):
    self._prompts.set_state(state)

  def evaluate(self, params, rng, step):
    out = _common.greedy_accuracy(self.ctx, self.lm_params(params), rng, step)
    return out | self._pass_at_k(self.lm_params(params), rng)

  def _pass_at_k(self, lm_params, rng):
    """pass@k on held-out prompts from `eval.num_samples` samples each."""
    ctx, c = self.ctx, self.ctx.config.eval
    if ctx.config.data.task == 'digitsum':
      return exact_digitsum_metrics(ctx, lm_params)
    n = min(c.pass_prompts, len(ctx.test_src))
    if not n or not c.num_samples:
      return {}
    records = [ctx.test_src[i] for i in range(n)]
    out = recipes.rollout(
        ctx.graphdef, lm_params, ctx.tokenizer,
        [ctx.fmt(r)[0] for r in records], records, rng,
        group_size=c.num_samples, max_prompt_len=ctx.config.data.max_len,
        max_new_tokens=c.max_new_tokens, temperature=1.0)
    verify = builders.verifier(ctx.config.data.task)
    bits = np.array([verify(t, r) for t, r in zip(out.texts, out.records)])
    correct = bits.reshape(n, c.num_samples).sum(-1)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= c.num_samples]
    return {f'eval/pass@{k}': float(np.mean(
        [recipes.pass_at_k(c.num_samples, int(ci), k) for ci in correct]))
            for k in ks}


def exact_digitsum_metrics(ctx, lm_params) -> dict:
  """Exact pass@k (k = 1 … 256), coverage@128 and answer entropy."""
  prompts = data.digitsum_prompts()
  logp = recipes.answer_logprobs(
      ctx.graphdef, lm_params, ctx.tokenizer,
      [data.digitsum_format(r)[0] for r in prompts],
      [f' {y}' for y in data.DIGITSUM_ANSWERS],
      max_prompt_len=ctx.config.data.max_len)
  probs = np.exp(logp)
  valid = np.array([[data.digitsum_correct(y, r)
                     for y in data.DIGITSUM_ANSWERS] for r in prompts])
  p_correct = (probs * valid).sum(-1)
  rare = np.isin([int(r['sum']) for r in prompts], data.RARE_DIGIT_SUMS)
  out = {f'eval/pass@{k}': data.exact_pass_at_k(p_correct, k)
         for k in (1, 2, 4, 8, 16, 32, 64, 128, 256)}
  out.update({
      'eval/coverage@128': data.exact_coverage(probs, valid, 128),
      'eval/pass@1_rare': data.exact_pass_at_k(p_correct[rare], 1),
      'eval/pass@256_rare': data.exact_pass_at_k(p_correct[rare], 256),
      'eval/answer_mass': float(probs.sum(-1).mean()),
      'eval/answer_entropy': float(np.mean(-(probs * logp).sum(-1))),
  })
  return out


def _rollout_metrics(out, batch, parts, errors, group_size) -> dict:
  """The generation-phase metrics of shared/specs/policy_gradient.md §9."""
  r = batch['rewards']
  mask = batch['loss_mask']
  lengths = out.completion_lengths
  groups = r.reshape(-1, group_size)
  adv = batch.get('advantages', r)  # topr/w_reinforce/nft: the rewards
  adv = adv if adv.ndim == 1 else adv[mask > 0]
  mismatch = np.abs(batch['behaviour_logp'] - batch['old_logp'])[mask > 0]
  metrics = {
      'reward/mean': float(r.mean()), 'reward/std': float(r.std()),
      'accuracy': float(batch['correct'].mean()),
      'zero_variance_groups': float(np.mean(groups.std(-1) == 0)),
      'advantage/mean': float(adv.mean()), 'advantage/std': float(adv.std()),
      'advantage/abs_mean': float(np.abs(adv).mean()),
      'response_length/mean': float(lengths.mean()),
      'response_length/max': float(lengths.max()),
      'response_length/correct': _mean(lengths[batch['correct'] > 0]),
      'response_length/wrong': _mean(lengths[batch['correct'] == 0]),
      'truncated': float(1 - out.done.mean()),
      'verifier_errors': float(errors),
      'sampler_learner_abs_diff': _mean(mismatch),
  }
  metrics.update({f'reward/{k}': float(v.mean()) for k, v in parts.items()})
  return metrics


def _mean(x) -> float:
  return float(np.mean(x)) if np.size(x) else float('nan')
