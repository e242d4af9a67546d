"""SFT: one loader batch per step; eval loss and greedy accuracy."""

import jax
import numpy as np

from experiments import builders
from experiments.phases import _common
from postrain import recipes


class Sft(_common.Phase):
  """Supervised fine-tuning on `(prompt, response)` pairs of `config.data`."""

  def __init__(self, ctx):
    super().__init__(ctx)
    c = ctx.config
    self._it = iter(builders.loader(c.data, ctx.train_src, ctx.tokenizer,
                                    ctx.fmt, seed=c.seed))
    self.objective = recipes.sft.make_objective(ctx.graphdef, **c.loss)
    self._eval_objective = jax.jit(self.objective)

  def batches(self, state, rng):
    del state, rng
    return [next(self._it)], {
        'truncated': self._it.stats.num_truncated}

  def get_state(self):
    s = self._it.get_state()
    return {'bytes': s.decode()} if isinstance(s, bytes) else s

  def set_state(self, state):
    self._it.set_state(state['bytes'].encode()
                       if isinstance(state, dict) and 'bytes' in state
                       else state)

  def evaluate(self, params, rng, step):
    ctx, c = self.ctx, self.ctx.config
    loader = builders.loader(c.data, ctx.test_src, ctx.tokenizer, ctx.fmt,
                             seed=0, shuffle=False, num_epochs=None)
    loss = [self._eval_objective(params, jax.tree.map(ctx.put, b), rng)[0]
            for b, _ in zip(loader, range(c.eval.loss_batches))]
    out = {'eval/loss': float(np.mean(jax.device_get(loss)))}
    return out | _common.greedy_accuracy(ctx, params, rng, step)
