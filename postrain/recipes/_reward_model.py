"""Bradley–Terry reward models: a scalar head on the transformer.

`r(x, y) = h_last·w + b`, where `h_last` [D] is the final hidden state at the
last response token: the input position whose target is the row's last
counted token (eos), so it has read the prompt and the whole response.
Pairs come in the DPO layout (`[B, 2, T]`, chosen then rejected; see
`postrain.recipes.dpo`) and are scored in one forward. The loss is
`postrain.losses.bradley_terry_loss` (margin, label smoothing, magnitude,
centring); label flipping is a data step (`flip` in the batch, e.g. from
`losses.flip_low_strength` over an ensemble) that swaps the pair's sides.

Wang et al., *Secrets of RLHF in Large Language Models Part II: Reward
Modeling* (arXiv:2401.06080); Ouyang et al., *Training language models to
follow instructions with human feedback* (arXiv:2203.02155).
"""

from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from postrain import data
from postrain import losses

_ROW_KEYS = ('inputs', 'targets', 'positions', 'segment_ids', 'loss_mask')


def init_head(embed_dim: int) -> dict:
  """A zero-initialised scalar head `r = h·w + b` over [D]."""
  return {'kernel': jnp.zeros((embed_dim,), jnp.float32),
          'bias': jnp.zeros((), jnp.float32)}


def rewards(graphdef, params, rows) -> jax.Array:
  """Scalar rewards [N] of rows [N, T]; `params = {'lm': ..., 'head': ...}`.

  A row without a counted token (empty `loss_mask`) reads position 0.
  """
  model = nnx.merge(graphdef, params['lm'])
  hidden, _ = model.features(rows['inputs'], rows['positions'],
                             segment_ids=rows['segment_ids'])
  mask = rows['loss_mask']
  t = mask.shape[-1]
  last = (t - 1) - jnp.argmax(mask[:, ::-1] > 0, axis=-1)
  last = jnp.where(jnp.any(mask > 0, -1), last, 0)
  h = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
  head = params['head']
  return jnp.einsum('ND,D->N', h.astype(jnp.float32), head['kernel']) + (
      head['bias'])


def pair_rewards(graphdef, params, batch) -> jax.Array:
  """Rewards [B, 2] of the chosen and rejected rows of [B, 2, T] pairs."""
  b, r, t = batch['inputs'].shape
  flat = {k: batch[k].reshape(b * r, t) for k in _ROW_KEYS}
  return rewards(graphdef, params, flat).reshape(b, r)


def make_objective(graphdef, *, margin: float = 0.0,
                   label_smoothing: float = 0.0, magnitude: float = 1.0,
                   centering: float = 0.0):
  """`objective(params, batch, rng) -> (loss, metrics)` for a BT reward model.

  Args:
    graphdef: the LM's `nnx.GraphDef`.
    margin: μ (a batch entry `margin` [B] overrides it per pair).
    label_smoothing: ε.
    magnitude: m (a batch entry `magnitude` [B] overrides it per pair).
    centering: c of the penalty `c·(r_c + r_r)²`.

  Returns:
    The objective: mean BT loss; metrics `accuracy` (`1[d > 0]` on the
    labels as given), `margin` (mean d), `reward/mean`, `reward/std`,
    `tokens`. With a batch entry `flip` [B] (bool), flipped pairs swap sides.
  """
  def objective(params, batch, rng):
    del rng
    r = pair_rewards(graphdef, params, batch)
    r_c, r_r = r[:, 0], r[:, 1]
    if 'flip' in batch:
      flip = batch['flip'] > 0
      r_c, r_r = jnp.where(flip, r_r, r_c), jnp.where(flip, r_c, r_r)
    loss = losses.bradley_terry_loss(
        r_c, r_r, margin=batch.get('margin', margin),
        label_smoothing=label_smoothing,
        magnitude=batch.get('magnitude', magnitude), centering=centering)
    metrics = {'accuracy': jnp.mean(losses.reward_accuracy(r_c, r_r)),
               'margin': jnp.mean(r_c - r_r),
               'reward/mean': jnp.mean(r), 'reward/std': jnp.std(r),
               'tokens': jnp.sum(batch['segment_ids'] > 0).astype(
                   jnp.float32)}
    return jnp.mean(loss), metrics

  return objective


class RewardFn:
  """A trained reward model as a reward function of text.

  `fn(text, record) -> float` is a reward function of
  `recipes.score_completions` (the RL phase); `fn.many(texts, records)`,
  which `score_completions` prefers, and `fn.batch(prompts, texts)` score
  many at once (fixed-size chunks, so it compiles once).
  """

  def __init__(self, graphdef, params, tokenizer: data.Tokenizer, *,
               max_len: int, prompt_fn=None, batch_size: int = 64):
    """`prompt_fn(record) -> prompt text` (default `record['prompt']`)."""
    self._params = params
    self._tok = tokenizer
    self._max_len = max_len
    self._prompt_fn = prompt_fn or (lambda record: record['prompt'])
    self._batch = batch_size
    self._score = jax.jit(lambda p, rows: rewards(graphdef, p, rows))

  def batch(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """float32 [N] rewards of `(prompt, response)` pairs."""
    out = []
    for start in range(0, len(texts), self._batch):
      chunk = list(zip(prompts[start:start + self._batch],
                       texts[start:start + self._batch]))
      n = len(chunk)
      chunk += [chunk[0]] * (self._batch - n)
      rows = data.tokenize_rows(self._tok, chunk, max_len=self._max_len)
      out.append(np.asarray(self._score(self._params, rows))[:n])
    return np.concatenate(out).astype(np.float32)

  def many(self, texts: Sequence[str], records: Sequence[dict]) -> np.ndarray:
    """float32 [N] rewards of completions of the records' prompts."""
    return self.batch([self._prompt_fn(r) for r in records], texts)

  def __call__(self, text: str, record: dict) -> float:
    return float(self.many([text], [record])[0])
