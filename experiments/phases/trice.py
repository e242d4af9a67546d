"""TRICE: propose, accept if correct, control-variate update; the memory.

Phan et al., *Training Chain-of-Thought via Latent-Variable Inference*
(arXiv:2312.02179). The rationale memory (`recipes.memory`) lives in
`TrainState.extra['memory']` and is checkpointed with the parameters; the
phase state holds the prompt-stream position and whether the hinted
initialisation has run, so a resumed run continues the same chains.
"""

import jax
import numpy as np

from experiments import builders
from experiments.phases import _common
from postrain import data
from postrain import losses
from postrain import recipes
from postrain import sharding


def answer_fn(task: str):
  """`fn(text) -> answer | None` of a task (for majority votes)."""
  if task == 'arithmetic':
    return data.extract_answer
  if task == 'gsm8k':
    return data.extract_gsm8k_answer
  raise ValueError(f'config.data.task={task!r}: rationale recipes need a '
                   'task with answers (arithmetic, gsm8k).')


def rationale_eval(ctx, lm_params, rng, step) -> dict:
  """Held-out greedy accuracy (overall and per number of steps) and
  self-consistency accuracy (majority vote over `eval.vote_samples`)."""
  c, dc = ctx.config.eval, ctx.config.data
  verify, answer = builders.verifier(dc.task), answer_fn(dc.task)
  records = [ctx.test_src[i] for i in range(min(c.num_prompts,
                                                len(ctx.test_src)))]
  prompts = [ctx.fmt(r)[0] for r in records]
  texts = recipes.generate(
      ctx.graphdef, lm_params, ctx.tokenizer, prompts, rng,
      max_new_tokens=c.max_new_tokens, batch_size=c.batch_size,
      max_prompt_len=dc.max_len, temperature=0.0)
  bits = np.array([verify(t, r) for t, r in zip(texts, records)])
  out = {'eval/accuracy': float(bits.mean())}
  if dc.task == 'arithmetic':  # E1 reports accuracy per chain length k.
    k = np.array([r['rationale'].count('\n') + 1 for r in records])
    out.update({f'eval/accuracy_k{j}': float(bits[k == j].mean())
                for j in sorted(set(k))})
  if c.vote_samples:
    n = min(c.vote_prompts, len(records))
    roll = recipes.rollout(
        ctx.graphdef, lm_params, ctx.tokenizer, prompts[:n], records[:n],
        jax.random.fold_in(rng, 1), group_size=c.vote_samples,
        max_prompt_len=dc.max_len, max_new_tokens=c.max_new_tokens)
    votes = [recipes.trice.majority_vote([answer(t) for t in group])
             for group in np.array(roll.texts, object).reshape(n, -1)]
    out['eval/vote_accuracy'] = float(np.mean(
        [v is not None and verify(f'{data.ANSWER_MARKER} {v}', r)
         for v, r in zip(votes, records)]))
    out['eval/sample_accuracy'] = float(np.mean(
        [verify(t, r) for t, r in zip(roll.texts, roll.records)]))
  return out


def memory_shardings(mesh, num_examples: int):
  """The memory's rows split over the data-parallel devices (replicated
  when they do not divide the number of examples)."""
  ways = mesh.shape['data'] * mesh.shape['fsdp']
  axis = 'batch' if num_examples % ways == 0 else None
  rows = sharding.logical_sharding(mesh, (axis, None))
  flags = sharding.logical_sharding(mesh, (axis,))
  return recipes.memory.RationaleMemory(tokens=rows, length=flags,
                                        correct=flags, hinted=flags)


class EpochStream:
  """Minibatches of distinct records: shuffled epochs, remainder dropped.

  TRICE's memory update needs distinct examples per minibatch, which a
  stream running across epoch boundaries cannot promise. Its state is the
  number of batches served.
  """

  def __init__(self, source, batch_size: int, seed: int):
    if not 0 < batch_size <= len(source):
      raise ValueError(f'batch size {batch_size}: need 1..{len(source)} '
                       '(the number of training examples).')
    self._src, self._batch, self._seed = source, batch_size, seed
    self.position = 0

  def next(self) -> list[dict]:
    per_epoch = len(self._src) // self._batch
    epoch, b = divmod(self.position, per_epoch)
    perm = np.random.default_rng([self._seed, epoch]).permutation(
        len(self._src))
    self.position += 1
    return [self._src[int(i)]
            for i in perm[b * self._batch:(b + 1) * self._batch]]

  def get_state(self):
    return {'position': self.position}

  def set_state(self, state):
    self.position = int(state['position'])


class Trice(_common.Phase):
  """TRICE with the control-variate (or basic) estimator, optional L-subsample.
  """
  samples = True

  def __init__(self, ctx):
    super().__init__(ctx)
    c, t = ctx.config, ctx.config.trice
    self._n = len(ctx.train_src)
    _common.check_divisible(
        'config.trice.batch_size', t.batch_size,
        ctx.mesh.shape['data'] * ctx.mesh.shape['fsdp'],
        'Examples are split over the data-parallel devices.')
    if c.optim.grad_accum != 1:
      raise ValueError('config.optim.grad_accum must be 1 for TRICE: the '
                       'control variate couples the examples of a batch.')
    if t.init not in ('hinted', 'none'):
      raise ValueError(f'config.trice.init={t.init!r}; valid: hinted, none.')
    if t.variance_every and t.batch_size % t.variance_groups:
      raise ValueError(f'config.trice.variance_groups={t.variance_groups} '
                       f'must divide trice.batch_size={t.batch_size}.')
    self._verify = builders.verifier(c.data.task)
    answer_fn(c.data.task)  # fails early for tasks without answers
    self._stream = EpochStream(ctx.train_src, t.batch_size, seed=c.seed)
    self._initialised = t.init == 'none'
    self._memory = None
    self.objective = recipes.trice.make_objective(
        ctx.graphdef, control_variate=t.control_variate,
        num_samples=t.num_samples)
    self._update = jax.jit(recipes.memory.update)
    self._variance = jax.jit(recipes.trice.make_gradient_variance(
        ctx.graphdef, num_groups=t.variance_groups))

  def extra_shardings(self, shardings):
    self._memory_sharding = memory_shardings(self.ctx.mesh, self._n)
    return shardings.replace(extra=dict(shardings.extra,
                                        memory=self._memory_sharding))

  def init_extra(self, params):
    del params
    return {'memory': recipes.memory.init_memory(
        self._n, self.ctx.config.trice.max_new_tokens)}

  def _sample(self, params, records, rng, prompt_fn):
    ctx, t = self.ctx, self.ctx.config.trice
    out = recipes.rollout(
        ctx.graphdef, params, ctx.tokenizer, [prompt_fn(r) for r in records],
        records, rng, group_size=1, max_prompt_len=ctx.config.data.max_len,
        max_new_tokens=t.max_new_tokens, temperature=1.0)
    correct = np.array([self._verify(x, r)
                        for x, r in zip(out.texts, out.records)])
    return out, correct

  def _hinted_init(self, state, rng):
    """Spec §1.3: one rationale per example sampled given the answer as a
    hint, verified, stored without the hint (only its completion tokens)."""
    t, src = self.ctx.config.trice, self.ctx.train_src
    tokens = np.zeros((self._n, t.max_new_tokens), np.int32)
    length = np.zeros(self._n, np.int32)
    correct = np.zeros(self._n, bool)
    for start in range(0, self._n, t.init_batch_size):
      idx = np.arange(start, start + t.init_batch_size) % self._n
      records = [src[int(i)] for i in idx]
      out, ok = self._sample(state.params, records,
                             jax.random.fold_in(rng, start),
                             data.hinted_prompt)
      rows = np.array([r['index'] for r in records])
      tokens[rows], length[rows] = out.completions, out.completion_lengths
      correct[rows] = ok
    memory = recipes.memory.init_memory(self._n, t.max_new_tokens,
                                        tokens=tokens, length=length,
                                        correct=correct)
    return jax.device_put(memory, self._memory_sharding)

  def batches(self, state, rng):
    ctx, t = self.ctx, self.ctx.config.trice
    memory = state.extra['memory']
    init_rng, sample_rng = jax.random.split(rng)
    metrics = {}
    if not self._initialised:
      memory = self._hinted_init(state, init_rng)
      self._initialised = True
      metrics['init/memory_acc'] = float(memory.correct.mean())
    records = self._stream.next()
    idx = np.array([r['index'] for r in records], np.int32)
    out, accepted = self._sample(state.params, records, sample_rng,
                                 lambda r: ctx.fmt(r)[0])
    self._memory, rows = self._update(memory, idx, out.completions,
                                      out.completion_lengths, accepted)
    self._memory = jax.device_put(self._memory, self._memory_sharding)
    rows = _common.host(rows)
    batch = recipes.trice.candidate_rows(
        out.prompts, out.prompt_lengths, rows.tokens, rows.length, out,
        pad_id=ctx.tokenizer.pad_id)
    batch.update(proposal_correct=accepted.astype(np.float32),
                 mask=rows.correct.astype(np.float32))
    tw = losses.trice_weights(accepted, rows.correct,
                              control_variate=t.control_variate)
    stats = _common.host(recipes.memory.memory_stats(self._memory))
    metrics.update(
        accept_rate=float(accepted.mean()),
        valid_frac=float(rows.correct.mean()),
        beta_mean=float(np.sum(tw['beta']) / max(float(tw['n_valid']), 1)),
        memory_acc=float(stats['memory_acc']),
        hinted_frac=float(stats['hinted_frac']),
        truncated=float(1 - out.done.mean()))
    step = int(state.step) + 1
    if t.variance_every and step % t.variance_every == 0:
      var = _common.host(self._variance(state.params,
                                        jax.tree.map(ctx.put, batch)))
      metrics.update({f'grad_var/{k}': float(v) for k, v in var.items()})
    return [batch], metrics

  def update_state(self, state):
    return state.replace(extra=dict(state.extra, memory=self._memory))

  def get_state(self):
    return dict(self._stream.get_state(), initialised=self._initialised)

  def set_state(self, state):
    self._stream.set_state(state)
    self._initialised = bool(state['initialised'])

  def evaluate(self, params, rng, step):
    return rationale_eval(self.ctx, params, rng, step)
