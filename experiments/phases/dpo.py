"""Preference optimisation: offline DPO and online / iterative DPO.

Offline: one step = one minibatch of `data.batch_size` pairs from the
dataset. The reference log-probs are computed from π_ref = the initial
parameters, either once in a pass over the data before training
(`dpo.reference='precomputed'`, written to `<workdir>/reference_logps.npz`;
no reference parameters in memory) or live per batch from frozen parameters
in `TrainState.extra['ref']` (`'live'`); `simpo` and `orpo` take none
(`'none'`).

Online (`dpo.online=True`, specs/preference.md §25): one step = one
iteration t: sample K responses for each of `prompts_per_iteration` prompts
from π_t, score them (the known reward or a reward-model run), pair best vs
worst (ties dropped; more prompts are drawn until the iteration has its
pairs), then `epochs` passes in `num_minibatches` updates, with reference
π_0 (`online_reference='pi0'`, kept in `extra`) or π_t. A checkpoint falls
between iterations, so the iteration index (the step), policy, π_0 and the
prompt position are the whole iteration state.

Evaluation on held-out pairs (preference, ranking and idealised ranking
accuracy), on samples (reward; KL to the reference by k3 when reference
parameters are in memory) and, on the synthetic task, exactly by enumerating
every response: `KL(π*‖π_θ)` with `π* ∝ π_ref·exp(r/β)`, expected reward
and `KL(π_θ‖π_ref)` over valid responses.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import builders
from experiments.phases import _common
from experiments.phases import rm as rm_phase
from postrain import data
from postrain import losses
from postrain import recipes
from postrain import train

REFERENCES = ('precomputed', 'live', 'none')
ONLINE_REFERENCES = ('pi0', 'pit')


def pretrain_reference(graphdef, params, rows, rng, *, steps, lr, batch_size):
  """π_ref: `steps` SFT updates (Adam) on random minibatches of `rows`.

  Pure JAX (a `fori_loop`), so it runs inside the jitted init.
  """
  opt = train.make_optimizer('adamw', lr, weight_decay=0.0)
  step = train.make_train_step(recipes.sft.make_objective(graphdef), opt)
  rows = jax.tree.map(jnp.asarray, rows)
  n = rows['inputs'].shape[0]

  def body(i, state):
    idx = jax.random.randint(jax.random.fold_in(rng, i), (batch_size,), 0, n)
    return step(state, jax.tree.map(lambda x: x[idx], rows), rng)[0]

  return jax.lax.fori_loop(0, steps, body,
                           train.init_state(params, opt)).params


class Dpo(_common.Phase):
  """Offline and online DPO with any `PREFERENCE_LOSSES` variant."""

  def __init__(self, ctx):
    super().__init__(ctx)
    c, d = ctx.config, ctx.config.dpo
    _check(c)
    self._task = (builders.preference_task(c.data)
                  if c.data.task == 'synthetic_preference' else None)
    self._rows = recipes.dpo.rows_per_pair(d.loss_type)
    self.objective = recipes.dpo.make_objective(
        ctx.graphdef, loss_type=d.loss_type, beta=d.beta,
        loss_kwargs=dict(d.loss_kwargs))
    self._seq = jax.jit(recipes.dpo.make_sequence_logps(ctx.graphdef))
    self._reward = _reward_fn(ctx, d.reward, self._task)
    self._ref_file = os.path.join(ctx.workdir, 'reference_logps.npz')
    self._refs = None
    if d.online:
      self._stream = _common.PromptStream(
          ctx.train_src, d.prompts_per_iteration, seed=c.seed)
      self.updates_per_step = d.epochs * d.num_minibatches
      self.samples = True
    else:
      self._stream = _common.PromptStream(
          range(len(ctx.train_src)), c.data.batch_size, seed=c.seed)

  def _fields(self, record):
    dc = self.ctx.config.data
    return data.pair_fields(record, dc.prompt_field, dc.chosen_field,
                            dc.rejected_field)

  def _tokenize(self, records):
    triples = [self._fields(r) for r in records]
    if self._rows == 3:  # KTO: prompt b with the chosen response of b+1
      triples = [t + (triples[(i + 1) % len(triples)][1],)
                 for i, t in enumerate(triples)]
    return data.tokenize_pairs(self.ctx.tokenizer, triples,
                               max_len=self.ctx.config.data.max_len)

  def _logps(self, params, batch):
    return _common.host(self._seq(params, jax.tree.map(self.ctx.put, batch)))

  def _eval_records(self):
    n = min(self.ctx.config.eval.num_pairs, len(self.ctx.test_src))
    return [self.ctx.test_src[i] for i in range(n)]

  def _reference_pass(self, state) -> dict:
    """π_ref log-probs of the data, from the step-0 parameters, on disk."""
    if self._refs is not None:
      return self._refs
    if os.path.exists(self._ref_file):
      with np.load(self._ref_file) as f:
        self._refs = dict(f)
      return self._refs
    if int(state.step) != 0:
      raise FileNotFoundError(
          f'{self._ref_file} is missing but the run is at step '
          f'{int(state.step)}: the reference pass must run at step 0. Restart '
          'the run in a fresh workdir.')
    params = self.lm_params(state.params)
    refs = {'test': self._pass(params, self._eval_records())}
    if self.ctx.config.dpo.reference == 'precomputed':
      src = self.ctx.train_src
      refs['train'] = self._pass(params, [src[i] for i in range(len(src))])
    if self.ctx.config.eval.exact:
      refs['enumerated'] = self._enumerated_logps(params)
    if jax.process_index() == 0:
      np.savez(self._ref_file, **refs)
    self._refs = refs
    return refs

  def _pass(self, params, records):
    """Sequence log-probs [N, R] of records, in padded batches."""
    bs, n = self.ctx.config.data.batch_size, len(records)
    if not n:
      return np.zeros((0, self._rows), np.float32)
    records = records + records[:1] * (-n % bs)
    return np.concatenate([self._logps(params, self._tokenize(
        records[i:i + bs])) for i in range(0, len(records), bs)])[:n]

  def _enumerated_logps(self, params):
    """log π(y) [C^L] of every valid response of the synthetic task."""
    task, bs = self._task, 512
    ys = task.responses()
    rows = data.tokenize_rows(self.ctx.tokenizer,
                              [(task.prompt, y) for y in ys],
                              max_len=task.length + 2)
    out = [self._logps(params, jax.tree.map(
        lambda x: x[i:i + bs, None], rows))[:, 0]
           for i in range(0, len(ys), bs)]
    return np.concatenate(out).astype(np.float64)

  def init_params(self, lm_params, rng):
    d = self.ctx.config.dpo
    if not d.ref_pretrain_steps:
      return lm_params
    task = self._task
    rows = data.tokenize_rows(
        self.ctx.tokenizer, [(r['prompt'], r['response'])
                             for r in task.corpus(d.ref_pretrain_corpus)],
        max_len=task.length + 2)
    return pretrain_reference(self.ctx.graphdef, lm_params, rows, rng,
                              steps=d.ref_pretrain_steps,
                              lr=d.ref_pretrain_lr,
                              batch_size=d.ref_pretrain_batch)

  def init_extra(self, params):
    d = self.ctx.config.dpo
    keep = d.reference == 'live' and (not d.online or
                                      d.online_reference == 'pi0')
    return {'ref': params} if keep else {}

  def batches(self, state, rng):
    if self.ctx.config.dpo.online:
      return self._iteration(state, rng)
    idx = self._stream.next()
    batch = self._tokenize([self.ctx.train_src[int(i)] for i in idx])
    ref = self.ctx.config.dpo.reference
    if ref == 'live':
      batch['ref_logp'] = self._logps(state.extra['ref'], batch)
    elif ref == 'precomputed':
      batch['ref_logp'] = self._reference_pass(state)['train'][np.asarray(idx)]
    return [batch], {}

  def _iteration(self, state, rng):
    """Sample K per prompt from π_t, score, pair best vs worst, minibatch."""
    ctx, d = self.ctx, self.ctx.config.dpo
    params = self.lm_params(state.params)
    pairs, drawn, kept = [], 0, 0
    for attempt in range(d.max_rounds):
      records = self._stream.next()
      out = self._sample(params, records, jax.random.fold_in(rng, attempt),
                         d.samples_per_prompt, d.temperature)
      r = self._reward(out).reshape(len(records), d.samples_per_prompt)
      best, worst, keep = recipes.dpo.best_vs_worst(r, min_gap=d.min_gap)
      rows = recipes.assemble(out, pad_id=ctx.tokenizer.pad_id)
      pairs.append(recipes.dpo.pair_rows(rows, best, worst, keep,
                                         d.samples_per_prompt))
      drawn, kept = drawn + len(records), kept + int(keep.sum())
      if attempt == 0:
        metrics = {'reward/mean': float(r.mean()),
                   'reward/median': float(np.median(r)),
                   'response_length/mean': float(
                       out.completion_lengths.mean())}
      if kept >= d.prompts_per_iteration:
        break
    else:
      raise RuntimeError(
          f'online DPO: only {kept} of {drawn} prompts gave a pair (the rest '
          f'tie) in dpo.max_rounds={d.max_rounds} rounds; raise max_rounds, '
          'samples_per_prompt or temperature, or lower min_gap.')
    n = d.prompts_per_iteration
    batch = {k: np.concatenate([p[k] for p in pairs])[:n] for k in pairs[0]}
    batch['prev_logp'] = self._logps(params, batch)  # π_t, learner's forward
    if d.reference == 'live':
      batch['ref_logp'] = (batch['prev_logp'] if d.online_reference == 'pit'
                           else self._logps(state.extra['ref'], batch))
    metrics.update(pairs_kept=kept / drawn, prompts_drawn=float(drawn))
    return _common.split_minibatches(
        batch, d.num_minibatches, d.epochs,
        jax.random.fold_in(rng, d.max_rounds)), metrics

  def _sample(self, params, records, rng, k, temperature):
    c = self.ctx.config
    return recipes.rollout(
        self.ctx.graphdef, params, self.ctx.tokenizer,
        [self._fields(r)[0] for r in records], records, rng, group_size=k,
        max_prompt_len=c.data.max_len, max_new_tokens=c.dpo.max_new_tokens,
        temperature=temperature)

  def get_state(self):
    return self._stream.get_state()

  def set_state(self, state):
    self._stream.set_state(state)

  def evaluate_state(self, state, rng, step):
    refs = self._reference_pass(state)
    params = self.lm_params(state.params)
    out = self._pair_metrics(params, refs['test'])
    out.update(self._sample_metrics(params, state.extra.get('ref'), rng))
    if 'enumerated' in refs:
      out.update(self._exact_metrics(params, refs['enumerated']))
    return out

  def _pair_metrics(self, params, ref):
    """Held-out preference / ranking / idealised ranking accuracy."""
    records = self._eval_records()
    if not records:
      return {}
    logp = self._pass(params, records)
    beta = self.ctx.config.dpo.beta
    h = logp[:, :2] - ref[:, :2]
    out = {'eval/preference_accuracy': float(np.mean(h[:, 0] > h[:, 1])),
           'eval/ranking_accuracy': float(np.mean(
               losses.ranking_accuracy(logp[:, 0], logp[:, 1]))),
           'eval/logps_chosen': float(logp[:, 0].mean()),
           'eval/logps_rejected': float(logp[:, 1].mean())}
    if all('alpha' in r for r in records):
      alpha = np.array([r['alpha'] for r in records])
      out['eval/idealized_ranking_accuracy'] = float(np.mean(
          losses.idealized_ranking_accuracy(ref[:, 0], ref[:, 1], alpha,
                                            beta=beta)))
    return out

  def _sample_metrics(self, params, ref_params, rng):
    """Reward of sampled responses; KL(π_θ‖π_ref) by k3 on them."""
    e = self.ctx.config.eval
    if not e.num_samples or self._reward is None:
      return {}
    n = min(e.num_prompts, len(self.ctx.test_src))
    out = self._sample(params, [self.ctx.test_src[i] for i in range(n)], rng,
                       e.num_samples, 1.0)
    metrics = {'eval/reward': float(self._reward(out).mean()),
               'eval/response_length': float(out.completion_lengths.mean())}
    if ref_params is not None:
      rows = recipes.assemble(out, pad_id=self.ctx.tokenizer.pad_id)
      ref = self._logps(ref_params, {k: v[:, None] for k, v in rows.items()
                                     if k != 'behaviour_logp'})[:, 0]
      logr = ref - rows['behaviour_logp'].sum(-1)  # log π_ref/π_θ per sample
      metrics['eval/kl_ref_k3'] = float(np.mean(np.expm1(logr) - logr))
    return metrics

  def _exact_metrics(self, params, ref):
    """Exact sums over the C^L valid responses of the synthetic task."""
    task, beta = self._task, self.ctx.config.dpo.beta
    logp, r = self._enumerated_logps(params), task.rewards()
    star = data.tilted_log_probs(ref, r, beta)
    p, mass = np.exp(logp), np.exp(logp).sum()
    return {
        'eval/kl_star': data.kl_divergence(star, logp),
        'eval/reward_exact': float(p @ r + (1 - mass) * task.invalid_reward),
        'eval/reward_star': float(np.exp(star) @ r),
        'eval/kl_ref_exact': float(p @ (logp - ref)),
        'eval/valid_mass': float(mass),
    }


def _reward_fn(ctx, spec, task):
  """`fn(rollout) -> [R]` rewards: the known reward or a reward model."""
  if spec == 'known':
    if task is None:
      raise ValueError("config.dpo.reward='known' needs data.task="
                       "'synthetic_preference'; give a reward-model workdir.")
    return lambda out: np.array([task.reward(t) for t in out.texts],
                                np.float32)
  if not spec:
    return None
  c = ctx.config
  fn = rm_phase.load_reward_fn(ctx, spec,
                               max_len=c.data.max_len + c.dpo.max_new_tokens)
  return lambda out: fn.batch([_prompt_of(ctx, r) for r in out.records],
                              out.texts)


def _prompt_of(ctx, record):
  dc = ctx.config.data
  return data.pair_fields(record, dc.prompt_field, dc.chosen_field,
                          dc.rejected_field)[0]


def _check(c):
  """Config errors that name the key, before anything is built."""
  d = c.dpo
  free = d.loss_type in recipes.dpo.REFERENCE_FREE
  if d.reference not in REFERENCES:
    raise ValueError(f'config.dpo.reference={d.reference!r}; valid: '
                     f'{REFERENCES}.')
  if free != (d.reference == 'none'):
    raise ValueError(
        f'config.dpo.loss_type={d.loss_type!r} ' + (
            "is reference-free: set dpo.reference='none'." if free else
            "needs a reference: set dpo.reference to 'precomputed' or "
            "'live'."))
  if d.loss_type == 'kto' and d.reference != 'live':
    raise ValueError("config.dpo.loss_type='kto' pairs each prompt with "
                     "another row's completion per batch: set "
                     "dpo.reference='live'.")
  if d.ref_pretrain_steps and c.get('lora') and c.lora.rank:
    raise ValueError('config.dpo.ref_pretrain_steps > 0 trains every weight '
                     'of π_ref, which LoRA keeps frozen: set lora.rank=0, or '
                     'ref_pretrain_steps=0 with init_from a pretrained run.')
  if d.ref_pretrain_steps and (c.init_from or
                               c.data.task != 'synthetic_preference'):
    raise ValueError('config.dpo.ref_pretrain_steps > 0 pretrains π_ref on the '
                     "synthetic task's corpus: it needs data.task="
                     "'synthetic_preference' and no init_from (set it to 0).")
  if c.eval.exact and c.data.task != 'synthetic_preference':
    raise ValueError('config.eval.exact enumerates the responses of the '
                     "synthetic task: set it False for data.task="
                     f'{c.data.task!r}.')
  if d.online:
    if d.online_reference not in ONLINE_REFERENCES:
      raise ValueError(f'config.dpo.online_reference={d.online_reference!r}; '
                       f'valid: {ONLINE_REFERENCES}.')
    if d.loss_type == 'kto' or d.reference == 'precomputed':
      raise ValueError(
          'online DPO computes reference log-probs per iteration: set '
          "dpo.reference='live' (or 'none' for simpo/orpo); kto is offline "
          'only.')
    if not d.reward:
      raise ValueError("online DPO scores samples: set config.dpo.reward to "
                       "'known' or a reward-model workdir.")
    _common.check_divisible('config.dpo.prompts_per_iteration (pairs per '
                            'iteration)', d.prompts_per_iteration,
                            d.num_minibatches,
                            'Choose dpo.num_minibatches dividing it.')
