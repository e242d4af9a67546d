"""STaR, RFT, ReST-EM, RAFT: iterations of sample → keep → fine-tune.

At the first step of each iteration the phase samples `rs.samples` paths per
question from the current parameters, keeps some (`recipes.rejection.keep`),
optionally rationalises the failures with the answer as a hint (STaR), and,
with `rs.restart_from_base`, resets parameters and optimiser to the base
(the initial trainable parameters, kept in `TrainState.extra['initial']`;
under LoRA, the initial adapters). The other steps fine-tune on the kept
set with the SFT objective. The kept set is phase state (JSON in the
checkpoint), so a resumed run trains on the same data.
"""

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import builders
from experiments.phases import _common
from experiments.phases import trice as trice_phase
from postrain import data
from postrain import recipes

POLICIES = ('keep_correct', 'best_of_k')


def iteration_steps(total: int, growth: float, iterations: int) -> list[int]:
  """`total` update steps split over iterations in proportion to growth^i.

  STaR grows the steps by 20% per iteration (growth 1.2); the rounding
  remainder goes to the last iteration.
  """
  if iterations < 1 or total < iterations:
    raise ValueError(f'{total} steps cannot make {iterations} iterations '
                     '(config.total_steps, config.rs.iterations).')
  w = np.asarray([growth**i for i in range(iterations)], np.float64)
  steps = np.maximum(np.floor(total * w / w.sum()).astype(int), 1)
  steps[-1] = total - steps[:-1].sum()
  return [int(s) for s in steps]


class Rejection(_common.Phase):
  """One phase for the four recipes; `config.rs` sets which one."""
  samples = True

  def __init__(self, ctx):
    super().__init__(ctx)
    c, rs = ctx.config, ctx.config.rs
    self._schedule = iteration_steps(c.total_steps, rs.step_growth,
                                     rs.iterations)
    if rs.keep not in POLICIES:
      raise ValueError(f'config.rs.keep={rs.keep!r}; valid: {POLICIES}.')
    _common.check_divisible(
        'config.rs.batch_size', rs.batch_size,
        ctx.mesh.shape['data'] * ctx.mesh.shape['fsdp'],
        'Rows are split over the data-parallel devices.')
    self._verify = builders.verifier(c.data.task)
    trice_phase.answer_fn(c.data.task)  # fails early without answers
    self._starts = np.cumsum([0] + self._schedule)
    self._kept = None  # [[example index, completion text], ...]
    self._records = {r['index']: r for r in map(ctx.train_src.__getitem__,
                                                range(len(ctx.train_src)))}
    self._restart = False
    self.objective = recipes.sft.make_objective(ctx.graphdef)
    self._optimizer, _ = builders.optimizer(c.optim, c.total_steps)

  def init_extra(self, params):
    if not self.ctx.config.rs.restart_from_base:
      return {}
    return {'initial': jax.tree.map(jnp.copy, params)}

  def _sample(self, params, records, rng, k, prompt_fn, temperature):
    ctx, rs = self.ctx, self.ctx.config.rs
    out = recipes.rollout(
        ctx.graphdef, params, ctx.tokenizer, [prompt_fn(r) for r in records],
        records, rng, group_size=k, max_prompt_len=ctx.config.data.max_len,
        max_new_tokens=rs.max_new_tokens, temperature=temperature)
    ok = np.array([self._verify(t, r) for t, r in zip(out.texts, out.records)])
    return out.texts, ok.reshape(len(records), k)

  def _generate(self, params, it, rng) -> dict:
    """The kept set of iteration `it` and its metrics (spec §2–5, §9)."""
    ctx, rs = self.ctx, self.ctx.config.rs
    src = ctx.train_src
    n = rs.questions_per_iteration or len(src)
    order = np.random.default_rng([ctx.config.seed, it]).permutation(len(src))
    records = [src[int(i)] for i in order[:n]]
    kept, hinted, distinct = [], 0, []
    for start in range(0, n, rs.generate_batch):
      chunk = records[start:start + rs.generate_batch]
      chunk += chunk[:1] * (rs.generate_batch - len(chunk))  # fixed shapes
      key = jax.random.fold_in(rng, start)
      texts, ok = self._sample(params, chunk, key, rs.samples,
                               lambda r: ctx.fmt(r)[0], rs.temperature)
      if rs.rationalize:  # STaR: the failures, given the answer as a hint.
        hint_texts, hint_ok = self._sample(
            params, chunk, jax.random.fold_in(key, 1), 1, data.hinted_prompt,
            rs.temperature)
      for j, r in enumerate(chunk[:n - start]):
        group = texts[j * rs.samples:(j + 1) * rs.samples]
        idx = recipes.rejection.keep(group, ok[j], policy=rs.keep,
                                     cap=rs.max_per_question, dedup=rs.dedup)
        paths = [group[i] for i in idx]
        if rs.rationalize and not ok[j].any() and hint_ok[j, 0]:
          paths, hinted = [hint_texts[j]], hinted + 1  # stored without hint
        kept += [[int(r['index']), p] for p in paths]
        distinct.append(len({recipes.rejection.equation_key(p)
                             for p in paths}))
    if not kept:
      logging.warning(
          'iteration %d: no sample was kept from %d questions, so it makes '
          'no update. Start from a stronger base (init_from), raise '
          'rs.samples, or use rs.rationalize.', it, n)
    per_q = np.bincount(np.array([i for i, _ in kept], int),
                        minlength=len(src))[[r['index'] for r in records]]
    self._kept = kept
    return {'rs/iteration': float(it), 'rs/kept': float(len(kept)),
            'rs/questions_kept': float(np.mean(per_q > 0)),
            'rs/kept_per_question': float(per_q.mean()),
            'rs/rationalized_frac': hinted / n,
            'rs/distinct_equation_lists': float(np.mean(distinct))}

  def batches(self, state, rng):
    ctx, rs = self.ctx, self.ctx.config.rs
    step = int(state.step)  # updates so far = loop steps so far
    it = int(np.searchsorted(self._starts, step, side='right') - 1)
    pos = step - self._starts[it]
    metrics = {}
    if pos == 0:
      metrics = self._generate(state.params, it, jax.random.fold_in(rng, 7))
      self._restart = rs.restart_from_base
    if not self._kept:  # nothing kept this iteration: no update
      return [], metrics
    order = np.random.default_rng([ctx.config.seed, it, 1]).permutation(
        len(self._kept))
    take = order[(pos * rs.batch_size + np.arange(rs.batch_size))
                 % len(self._kept)]
    records = [self._records[self._kept[i][0]] for i in take]
    texts = [self._kept[i][1] for i in take]
    return [_sft_rows(ctx, records, texts, rs.max_new_tokens)], metrics

  def update_state(self, state):
    if not self._restart:
      return state
    self._restart = False
    # why copies: the state is donated, and one buffer may not be donated
    # twice (as params and as extra['initial']).
    params = jax.tree.map(lambda x: jnp.array(x, copy=True),
                          state.extra['initial'])
    return state.replace(params=params, opt_state=self._optimizer.init(params))

  def get_state(self):
    return {'kept': self._kept}

  def set_state(self, state):
    self._kept = state['kept']

  def evaluate(self, params, rng, step):
    return trice_phase.rationale_eval(self.ctx, params, rng, step)


def _sft_rows(ctx, records, texts, max_new_tokens):
  """Plain prompt + kept path (+ eos) rows, loss on the path (SFT layout)."""
  tok = ctx.tokenizer
  prompts, plen = data.encode_prompts(tok, [ctx.fmt(r)[0] for r in records],
                                      ctx.config.data.max_len)
  comp = np.full((len(texts), max_new_tokens + 1), tok.pad_id, np.int32)
  clen = np.zeros(len(texts), np.int32)
  for i, t in enumerate(texts):
    ids = (tok.encode(t) + [tok.eos_id])[:max_new_tokens + 1]
    comp[i, :len(ids)], clen[i] = ids, len(ids)
  rows = recipes.Rollout(prompts, plen, comp, clen, np.zeros(comp.shape,
                                                             np.float32),
                         np.ones(len(texts), bool), list(texts), records)
  out = recipes.assemble(rows, pad_id=tok.pad_id)
  return {k: out[k] for k in recipes.trice.ROW_KEYS}
