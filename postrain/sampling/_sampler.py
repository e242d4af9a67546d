"""Autoregressive LM sampling with an explicit KV cache: functions only.

Prefill once, then a `jax.lax.while_loop` over a `SamplingState` that stops
when every row has emitted a stop token or `max_new_tokens` were drawn.
Token pickers are `(logits [B, V] float32, rng) -> tokens int32 [B]`.

Example:
  >>> cfg = postrain.models.TransformerConfig.preset('tiny')
  >>> model = postrain.models.Transformer(cfg, rngs=nnx.Rngs(0))
  >>> graphdef, state = nnx.split(model)
  >>> out = sample(graphdef, state, jnp.array([[5, 6, 0]]), jnp.array([2]),
  ...              jax.random.key(0), max_new_tokens=4, temperature=0.0)
  >>> out.tokens.shape
  (1, 4)
"""

import functools
from typing import Callable

import flax
from flax import nnx
import jax
import jax.numpy as jnp

from postrain.models import _transformer

Picker = Callable[[jax.Array, jax.Array], jax.Array]

_TRACES = [0]  # times `_sample_jit` was traced, i.e. compiled


def trace_count() -> int:
  """How many times the sampler was traced (compiled) in this process."""
  return _TRACES[0]


def greedy(logits: jax.Array, rng: jax.Array | None = None) -> jax.Array:
  """argmax over V; `rng` is unused (kept for the picker signature)."""
  del rng
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def filter_top_k(logits: jax.Array, k: int) -> jax.Array:
  """Sets all but the k largest logits of each row to -inf (ties kept)."""
  kth = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits >= kth, logits, -jnp.inf)


def filter_top_p(logits: jax.Array, p: float) -> jax.Array:
  """Nucleus filter: keeps the smallest top set with probability mass >= p.

  Sorted descending, a token is kept iff the mass strictly before it is < p,
  so the most likely token always survives (Holtzman et al., "The Curious
  Case of Neural Text Degeneration", arXiv:1904.09751).
  """
  order = jnp.argsort(-logits, axis=-1)
  sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  keep_sorted = mass_before < p
  # Scatter the decision back to vocabulary order.
  keep = (
      jnp.zeros_like(keep_sorted)
      .at[jnp.arange(logits.shape[0])[:, None], order]
      .set(keep_sorted)
  )
  return jnp.where(keep, logits, -jnp.inf)


def make_picker(
    temperature: float | None = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Picker:
  """Composes temperature, then top-k, then top-p, then a categorical draw.

  Args:
    temperature: 0 or None means greedy (top_k/top_p are then irrelevant).
    top_k: keep the k most likely tokens, or None.
    top_p: nucleus mass in (0, 1], or None.

  Returns:
    A picker `(logits [B, V], rng) -> int32 [B]`.
  """
  if not temperature:
    return greedy
  if top_k is not None and top_k < 1:
    raise ValueError(f'top_k={top_k} must be >= 1.')
  if top_p is not None and not 0.0 < top_p <= 1.0:
    raise ValueError(f'top_p={top_p} must be in (0, 1].')

  def pick(logits, rng):
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None:
      logits = filter_top_k(logits, top_k)
    if top_p is not None:
      logits = filter_top_p(logits, top_p)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)

  return pick


@flax.struct.dataclass
class SampleOutput:
  """What `sample` returns.

  Attributes:
    tokens: int32 [B, max_new_tokens]; the stop token is included, `pad_id`
      after it.
    logprobs: float32 [B, max_new_tokens]: log-prob of each chosen token under
      the model's *un-tempered, unfiltered* distribution (log_softmax of the
      raw logits), as RL and TRICE need; 0 after the stop.
    lengths: int32 [B] generated tokens, the stop token included.
    done: bool [B] whether the row emitted a stop token (False: it was cut
      at max_new_tokens).
  """

  tokens: jax.Array
  logprobs: jax.Array
  lengths: jax.Array
  done: jax.Array


@flax.struct.dataclass
class SamplingState:
  """Carry of the decode loop; `logits` [B, V] predict token `step`."""

  step: jax.Array
  logits: jax.Array
  positions: jax.Array  # int32 [B] position of the next token
  cache: _transformer.Cache
  rng: jax.Array
  out: SampleOutput


def bucket_length(length: int) -> int:
  """Prompt width rounded up to a power of two (at least 8)."""
  return max(8, 1 << (max(length, 1) - 1).bit_length())


def left_align(prompts, lengths, pad_id):
  """Right-padded [B, P] -> (left-padded tokens, positions, segment ids)."""
  width = prompts.shape[1]
  src = jnp.arange(width)[None, :] - (width - lengths)[:, None]
  valid = src >= 0
  tokens = jnp.take_along_axis(prompts, jnp.maximum(src, 0), axis=1)
  tokens = jnp.where(valid, tokens, pad_id)
  positions = jnp.where(valid, src, 0).astype(jnp.int32)
  return tokens, positions, valid.astype(jnp.int32)


def _prefill(model, prompts, lengths, max_new_tokens, pad_id):
  """Runs the prompts once; returns (last-position logits [B, V], cache)."""
  cfg = model.config
  tokens, positions, segments = left_align(prompts, lengths, pad_id)
  b, width = prompts.shape
  cache = _transformer.init_cache(cfg, b, width + max_new_tokens)
  hidden, cache = model.features(
      tokens, positions, segment_ids=segments, cache=cache
  )
  # Left padding puts every row's last prompt token at the last column.
  return model.unembed(hidden[:, -1:])[:, 0], cache


def _decode_step(model, picker, stop_tokens, pad_id, state):
  """Picks token `step` from `state.logits`, then runs it through the model."""
  out = state.out
  rng, key = jax.random.split(state.rng)
  token = picker(state.logits, key)
  logprob = jnp.take_along_axis(
      jax.nn.log_softmax(state.logits, axis=-1), token[:, None], axis=-1
  )[:, 0]
  live = ~out.done
  token = jnp.where(live, token, pad_id)
  stopped = jnp.isin(token, jnp.asarray(stop_tokens, jnp.int32)) & live
  out = SampleOutput(
      tokens=out.tokens.at[:, state.step].set(token),
      logprobs=out.logprobs.at[:, state.step].set(
          jnp.where(live, logprob, 0.0)
      ),
      lengths=out.lengths + live.astype(jnp.int32),
      done=out.done | stopped,
  )
  logits, cache = model(
      token[:, None],
      state.positions[:, None],
      segment_ids=jnp.ones_like(token)[:, None],
      cache=state.cache,
  )
  return SamplingState(
      step=state.step + 1,
      logits=logits[:, 0],
      positions=state.positions + 1,
      cache=cache,
      rng=rng,
      out=out,
  )


@functools.partial(
    jax.jit,
    static_argnames=(
        'graphdef',
        'max_new_tokens',
        'picker_args',
        'stop_tokens',
        'pad_id',
    ),
)
def _sample_jit(
    graphdef,
    state,
    prompts,
    lengths,
    rng,
    *,
    max_new_tokens,
    picker_args,
    stop_tokens,
    pad_id,
):
  """The compiled sampler; one trace per static arguments and shapes."""
  _TRACES[0] += 1  # runs at trace time only
  model = nnx.merge(graphdef, state)
  picker = make_picker(*picker_args)
  logits, cache = _prefill(model, prompts, lengths, max_new_tokens, pad_id)
  b = prompts.shape[0]
  init = SamplingState(
      step=jnp.zeros((), jnp.int32),
      logits=logits,
      positions=lengths.astype(jnp.int32),
      cache=cache,
      rng=rng,
      out=SampleOutput(
          tokens=jnp.full((b, max_new_tokens), pad_id, jnp.int32),
          logprobs=jnp.zeros((b, max_new_tokens), jnp.float32),
          lengths=jnp.zeros((b,), jnp.int32),
          done=jnp.zeros((b,), bool),
      ),
  )

  def cond(s):
    return (s.step < max_new_tokens) & ~jnp.all(s.out.done)

  body = functools.partial(_decode_step, model, picker, stop_tokens, pad_id)
  return jax.lax.while_loop(cond, body, init).out


def sample(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    prompts: jax.Array,
    prompt_lengths: jax.Array,
    rng: jax.Array,
    *,
    max_new_tokens: int,
    temperature: float | None = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_tokens: tuple[int, ...] = (),
    pad_id: int = 0,
) -> SampleOutput:
  """Samples continuations of right-padded prompts.

  Rows are re-aligned to left padding internally (per-row positions, padding
  slots masked in the cache), so rows of different lengths decode in
  lock-step and each row gives what it would give alone. The prompt width is
  bucketed up to a power of two, so the function compiles once per (B,
  bucket, max_new_tokens, picker settings, stop tokens, pad_id); see
  `trace_count`. The cache holds bucket + max_new_tokens slots for every
  layer (sliding-window layers included: masked, not a ring buffer). The loop
  body picks a token and then runs the model on it, so the last iteration's
  forward is unused.

  Args:
    graphdef: from `nnx.split(model)` of a `postrain.models.Transformer`.
    state: the matching parameter state.
    prompts: int32 [B, P], each row's prompt followed by padding.
    prompt_lengths: int32 [B], each in [1, P].
    rng: PRNG key for the picker.
    max_new_tokens: tokens to generate per row at most.
    temperature: 0 or None for greedy.
    top_k: optional top-k filter.
    top_p: optional nucleus filter.
    stop_tokens: ids that end a row (the stop token is kept in the output).
    pad_id: id written after a row stops and used for prompt padding.

  Returns:
    A `SampleOutput`.
  """
  make_picker(temperature, top_k, top_p)  # fail fast on bad settings
  if max_new_tokens < 1:
    raise ValueError(f'max_new_tokens={max_new_tokens} must be >= 1.')
  prompts = jnp.asarray(prompts, jnp.int32)
  width = prompts.shape[1]
  bucket = bucket_length(width)
  prompts = jnp.pad(
      prompts, ((0, 0), (0, bucket - width)), constant_values=pad_id
  )
  return _sample_jit(
      graphdef,
      state,
      prompts,
      jnp.asarray(prompt_lengths, jnp.int32),
      rng,
      max_new_tokens=max_new_tokens,
      picker_args=(temperature, top_k, top_p),
      stop_tokens=tuple(int(t) for t in stop_tokens),
      pad_id=int(pad_id),
  )
