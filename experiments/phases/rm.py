"""Reward model: a Bradley–Terry scalar head trained on preference pairs.

One step = one minibatch of `data.batch_size` pairs. The parameters are
`{'lm': ..., 'head': ...}`; `init_from` starts the LM part from another run
(e.g. the SFT or DPO policy). After training, `load_reward_fn(ctx, workdir)`
turns the run into a reward function for online DPO (`dpo.reward=WORKDIR`)
and for RL (`fn(text, record)`, the signature of `recipes.score_completions`).
"""

import functools

from flax import nnx
import jax
import numpy as np

from experiments import builders
from experiments.phases import _common
from postrain import data
from postrain import models
from postrain import recipes
from postrain import sharding
from postrain import train


def load_reward_fn(ctx: _common.Context, workdir: str, *, max_len: int):
  """The reward model trained in `workdir` as a `RewardFn`.

  Its `model` settings must match this run's (same graph and vocabulary).
  """
  dim = ctx.model_cfg.embed_dim
  abstract = jax.eval_shape(lambda: {
      'lm': nnx.state(models.Transformer(ctx.model_cfg, rngs=nnx.Rngs(0))),
      'head': recipes.reward_model.init_head(dim)})
  shardings = sharding.tree_shardings(ctx.mesh, abstract)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)
  params = train.restore_params(workdir, abstract)
  return recipes.reward_model.RewardFn(
      ctx.graphdef, params, ctx.tokenizer, max_len=max_len,
      prompt_fn=lambda r: ctx.fmt(r)[0])


class RewardModel(_common.Phase):
  """Bradley–Terry reward model with margin, smoothing and magnitude."""

  def __init__(self, ctx):
    super().__init__(ctx)
    c = ctx.config
    self._task = (builders.preference_task(c.data)
                  if c.data.task == 'synthetic_preference' else None)
    self.objective = recipes.reward_model.make_objective(
        ctx.graphdef, margin=c.rm.margin,
        label_smoothing=c.rm.label_smoothing, magnitude=c.rm.magnitude,
        centering=c.rm.centering)
    self._eval_objective = jax.jit(self.objective)
    self._score = jax.jit(functools.partial(recipes.reward_model.rewards,
                                            ctx.graphdef))
    self._stream = _common.PromptStream(range(len(ctx.train_src)),
                                        c.data.batch_size, seed=c.seed)

  def init_params(self, lm_params, rng):
    del rng
    return {'lm': lm_params,
            'head': recipes.reward_model.init_head(
                self.ctx.model_cfg.embed_dim)}

  def lm_params(self, params):
    return params['lm']

  def _batch(self, records):
    dc = self.ctx.config.data
    return data.tokenize_pairs(
        self.ctx.tokenizer,
        [data.pair_fields(r, dc.prompt_field, dc.chosen_field,
                          dc.rejected_field) for r in records],
        max_len=dc.max_len)

  def batches(self, state, rng):
    del state, rng
    return [self._batch([self.ctx.train_src[int(i)]
                         for i in self._stream.next()])], {}

  def get_state(self):
    return self._stream.get_state()

  def set_state(self, state):
    self._stream.set_state(state)

  def evaluate(self, params, rng, step):
    """Held-out BT loss and accuracy; on the synthetic task, agreement with
    the known reward (Pearson correlation over every valid response, and
    pair accuracy against the true order)."""
    ctx, c = self.ctx, self.ctx.config
    bs = c.data.batch_size
    n = min(c.eval.num_pairs, len(ctx.test_src)) // bs * bs
    records = [ctx.test_src[i] for i in range(n)]
    out = {}
    if records:
      ms = [_common.host(self._eval_objective(
          params, jax.tree.map(ctx.put, self._batch(records[i:i + bs])), rng))
            for i in range(0, n, bs)]
      out['eval/loss'] = float(np.mean([m[0] for m in ms]))
      out['eval/accuracy'] = float(np.mean([m[1]['accuracy'] for m in ms]))
    if self._task is None:
      return out
    task = self._task
    rows = data.tokenize_rows(ctx.tokenizer,
                              [(task.prompt, y) for y in task.responses()],
                              max_len=task.length + 2)
    r_hat = np.concatenate([_common.host(self._score(params, jax.tree.map(
        lambda x: ctx.put(x[i:i + 512]), rows))) for i in range(
            0, len(task.responses()), 512)])
    out['eval/reward_corr'] = (  # undefined for a constant (zero) head
        float(np.corrcoef(r_hat, task.rewards())[0, 1]) if np.std(r_hat) > 0
        else float('nan'))
    if records:
      index = {y: i for i, y in enumerate(task.responses())}
      true = [(index[r['chosen']], index[r['rejected']]) for r in records
              if r['reward_chosen'] != r['reward_rejected']]
      hi = [w if task.rewards()[w] > task.rewards()[l] else l for w, l in true]
      lo = [l if h == w else w for (w, l), h in zip(true, hi)]
      out['eval/true_order_accuracy'] = float(np.mean(r_hat[hi] > r_hat[lo]))
    return out
