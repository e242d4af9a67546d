"""What every phase shares: the run context, prompt streams, greedy eval."""

import abc
import dataclasses
from typing import Any

import grain
import jax
import numpy as np

from experiments import builders
from experiments import report
from postrain import data
from postrain import recipes


@dataclasses.dataclass
class Context:
  """Everything the loop has built that a phase may use."""
  config: Any
  workdir: str
  graphdef: Any  # the LM's nnx.GraphDef
  model_cfg: Any
  tokenizer: data.Tokenizer
  train_src: Any
  test_src: Any
  fmt: data.FormatFn
  put: Any  # host batch -> sharded global arrays
  mesh: Any


class Phase(abc.ABC):
  """One recipe's part of the loop. The loop calls, per step:

    batches, metrics = phase.batches(state, rng)   # generation phase
    state = phase.update_state(state)
    for batch in batches: state = step_fn(state, batch, ...)

  Subclasses set `objective` and override what they need.
  """
  updates_per_step = 1
  objective = None
  samples = False  # generates with the policy: the loop logs time/* split

  def __init__(self, ctx: Context):
    self.ctx = ctx

  def init_params(self, lm_params, rng):
    """The trainable pytree from the LM state (PPO adds a value head)."""
    del rng
    return lm_params

  def lm_params(self, params):
    return params

  def extra_shardings(self, shardings):
    """The train state's shardings, with the recipe's layout of `extra`
    (TRICE shards its memory by example); the default keeps them."""
    return shardings

  def init_extra(self, params) -> dict:
    """Recipe state kept in `TrainState.extra` (reference params, ...)."""
    del params
    return {}

  @abc.abstractmethod
  def batches(self, state, rng) -> tuple[list[dict], dict]:
    """`(update batches of this step, generation-phase metrics)`."""

  def update_state(self, state):
    """The train state after the generation phase, before the updates.

    Recipes with state written by generation (TRICE's memory, a restart
    from the base parameters) return a new state; the default keeps it.
    """
    return state

  def get_state(self) -> Any:
    return None

  def set_state(self, state: Any) -> None:
    del state

  def evaluate(self, params, rng, step: int) -> dict:
    return greedy_accuracy(self.ctx, self.lm_params(params), rng, step)

  def evaluate_state(self, state, rng, step: int) -> dict:
    """What the loop calls; override to read recipe state (`extra`)."""
    return self.evaluate(state.params, rng, step)


def greedy_accuracy(ctx: Context, lm_params, rng, step: int) -> dict:
  """Held-out accuracy of greedy completions under the task's verifier."""
  c, dc = ctx.config.eval, ctx.config.data
  n = min(c.num_prompts, len(ctx.test_src))
  verify = builders.verifier(dc.task)
  if not n or verify is None:
    return {}
  records = [ctx.test_src[i] for i in range(n)]
  prompts = [ctx.fmt(r)[0] for r in records]
  texts = recipes.generate(
      ctx.graphdef, lm_params, ctx.tokenizer, prompts, rng,
      max_new_tokens=c.max_new_tokens, batch_size=c.batch_size,
      max_prompt_len=dc.max_len, temperature=c.temperature)
  bits = np.array([verify(t, r) for t, r in zip(texts, records)])
  acc = float(bits.mean())
  report.write_samples(ctx.workdir, step, prompts[:c.num_samples_written],
                       texts, records, bits)
  return {'eval/accuracy': acc}


class PromptStream:
  """Deterministic, resumable batches of source records (shuffled epochs).

  Its state is one integer (records served), so a resumed run draws exactly
  the prompts it would have drawn.
  """

  def __init__(self, source, batch_size: int, seed: int):
    if batch_size > len(source):
      raise ValueError(f'{batch_size} prompts per step but the source has '
                       f'only {len(source)} records.')
    self._ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
    self._batch = batch_size
    self.position = 0

  def next(self) -> list[dict]:
    out = [self._ds[i] for i in range(self.position,
                                      self.position + self._batch)]
    self.position += self._batch
    return out

  def get_state(self):
    return {'position': self.position}

  def set_state(self, state):
    self.position = int(state['position'])


def split_minibatches(batch: dict, num_minibatches: int, epochs: int,
                      rng) -> list[dict]:
  """`epochs` shuffled passes over `batch`, each in `num_minibatches` parts.

  Rows stay together; the permutation comes from `rng`, so reruns repeat it.
  """
  rows = len(next(iter(batch.values())))
  perm_rng = np.random.default_rng(np.asarray(jax.random.key_data(rng)))
  out = []
  for _ in range(epochs):
    order = perm_rng.permutation(rows)
    for part in np.split(order, num_minibatches):
      out.append({k: v[part] for k, v in batch.items()})
  return out


def check_divisible(what: str, total: int, parts: int, hint: str):
  if parts <= 0 or total % parts:
    raise ValueError(f'{what}: {total} does not divide into {parts}. {hint}')


def host(tree):
  """Device arrays -> numpy (one transfer)."""
  return jax.tree.map(np.asarray, jax.device_get(tree))
