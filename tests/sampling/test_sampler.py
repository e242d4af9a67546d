"""Tests of the KV-cache sampler against naive full-sequence forwards."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain import models
from postrain import sampling

TINY = models.TransformerConfig.preset('tiny')
# Sliding window + soft-caps + biases exercise the cache masks.
LOCAL = TINY.replace(
    sliding_window=3,
    sliding_window_pattern=2,
    attn_logit_softcap=5.0,
    final_logit_softcap=10.0,
    qkv_bias=True,
    qk_norm=True,
)


def random_split(cfg, seed=0):
  """(graphdef, state) with peaked random weights: varied greedy paths."""
  return models.random_state(cfg, seed, weight_scale=2.0)


# One layer keeps compiles short; the cache test above covers two.
GRAPHDEF, STATE = random_split(TINY.replace(num_layers=1))


def _full_logits(graphdef, state, tokens):
  """Naive reference: float32 logits [B, T, V] of a full forward."""
  b, t = tokens.shape
  positions = jnp.broadcast_to(jnp.arange(t), (b, t))
  return nnx.merge(graphdef, state)(tokens, positions)[0]


_full_logits = jax.jit(_full_logits, static_argnums=0)


def _forward_cached(graphdef, state, tokens, positions, cache):
  return nnx.merge(graphdef, state)(tokens, positions, cache=cache)


_forward_cached = jax.jit(_forward_cached, static_argnums=0)


def _cached_logits(graphdef, state, tokens, prefill):
  """Prefill `prefill` tokens then decode the rest one at a time."""
  b, t = tokens.shape
  positions = jnp.broadcast_to(jnp.arange(t), (b, t))
  cfg = nnx.merge(graphdef, state).config
  cache = models.init_cache(cfg, b, t + 3)  # spare slots stay empty
  out = []
  for lo, hi in [(0, prefill)] + [(i, i + 1) for i in range(prefill, t)]:
    logits, cache = _forward_cached(
        graphdef, state, tokens[:, lo:hi], positions[:, lo:hi], cache
    )
    out.append(logits)
  assert int(cache.index) == t
  return jnp.concatenate(out, axis=1)


@pytest.mark.parametrize('cfg', [TINY, LOCAL], ids=['tiny', 'local'])
def test_cached_decode_equals_full_forward(cfg):
  graphdef, state = random_split(cfg)
  tokens = jax.random.randint(jax.random.key(0), (2, 9), 0, cfg.vocab_size)
  full = _full_logits(graphdef, state, tokens)
  cached = _cached_logits(graphdef, state, tokens, 4)
  np.testing.assert_allclose(cached, full, atol=1e-5, rtol=1e-5)


def _naive_greedy(prompt, n):
  """Greedy decoding that re-runs the full forward each step (width 16)."""
  tokens = list(prompt)
  for _ in range(n):
    padded = jnp.array([tokens + [0] * (16 - len(tokens))], jnp.int32)
    logits = _full_logits(GRAPHDEF, STATE, padded)[0, len(tokens) - 1]
    tokens.append(int(jnp.argmax(logits)))
  return tokens[len(prompt) :]


PROMPTS = [[5, 9, 2, 33, 7], [11, 4], [60, 1, 18]]
RIGHT_PADDED = jnp.array([p + [0] * (5 - len(p)) for p in PROMPTS], jnp.int32)
LENGTHS = jnp.array([len(p) for p in PROMPTS], jnp.int32)
N_NEW = 6


def _greedy(prompts, lengths, **kw):
  return sampling.sample(
      GRAPHDEF,
      STATE,
      prompts,
      lengths,
      jax.random.key(0),
      max_new_tokens=N_NEW,
      temperature=0.0,
      **kw,
  )


@pytest.fixture(scope='module')
def greedy_batch():
  return _greedy(RIGHT_PADDED, LENGTHS)


def test_greedy_equals_naive_loop(greedy_batch):
  for row, prompt in enumerate(PROMPTS):
    expected = _naive_greedy(prompt, N_NEW)
    assert greedy_batch.tokens[row].tolist() == expected
  assert len({tuple(r) for r in greedy_batch.tokens.tolist()}) > 1
  assert greedy_batch.lengths.tolist() == [N_NEW] * 3
  assert not bool(jnp.any(greedy_batch.done))


def test_batch_rows_equal_rows_alone(greedy_batch):
  for row, prompt in enumerate(PROMPTS):
    # Width 9 (bucket 16, batch: 8): each row sees a different pad amount.
    alone = jnp.array([prompt + [0] * (9 - len(prompt))], jnp.int32)
    alone = _greedy(alone, jnp.array([len(prompt)]))
    np.testing.assert_array_equal(alone.tokens[0], greedy_batch.tokens[row])
    np.testing.assert_allclose(
        alone.logprobs[0], greedy_batch.logprobs[row], atol=1e-5
    )


def test_logprobs_are_untempered_full_forward_logprobs():
  out = sampling.sample(
      GRAPHDEF,
      STATE,
      RIGHT_PADDED,
      LENGTHS,
      jax.random.key(3),
      max_new_tokens=N_NEW,
      temperature=0.7,
      top_k=20,
  )
  for row, prompt in enumerate(PROMPTS):
    seq = prompt + out.tokens[row].tolist()
    padded = jnp.array([seq + [0] * (16 - len(seq))], jnp.int32)
    logp = jax.nn.log_softmax(_full_logits(GRAPHDEF, STATE, padded)[0])
    idx = np.arange(len(prompt) - 1, len(seq) - 1)
    expected = logp[idx, np.asarray(out.tokens[row])]
    np.testing.assert_allclose(out.logprobs[row], expected, atol=1e-5)
  assert bool(jnp.all(out.logprobs < 0))


def test_stop_tokens_end_rows_and_pad_after(greedy_batch):
  stop = int(greedy_batch.tokens[0, 2])
  out = _greedy(RIGHT_PADDED, LENGTHS, stop_tokens=(stop, 63), pad_id=0)
  for row in range(3):
    gen = greedy_batch.tokens[row].tolist()
    n = next((i + 1 for i, t in enumerate(gen) if t in (stop, 63)), N_NEW)
    assert int(out.lengths[row]) == n
    assert bool(out.done[row]) == (n < N_NEW or gen[-1] in (stop, 63))
    assert out.tokens[row, :n].tolist() == gen[:n]
    assert out.tokens[row, n:].tolist() == [0] * (N_NEW - n)
    assert out.logprobs[row, n:].tolist() == [0.0] * (N_NEW - n)
  assert int(out.lengths[0]) <= 3 and bool(out.done[0])


def test_top_k_one_equals_greedy():
  logits = jax.random.normal(jax.random.key(0), (64, 50)) * 3.0
  picker = jax.jit(sampling.make_picker(temperature=1.0, top_k=1))
  for seed in range(3):
    np.testing.assert_array_equal(
        picker(logits, jax.random.key(seed)), sampling.greedy(logits)
    )


def test_same_bucket_does_not_recompile(greedy_batch):
  del greedy_batch  # compiled the width-5 -> 8 bucket already
  _greedy(RIGHT_PADDED, LENGTHS)
  before = sampling.trace_count()
  wider = jnp.pad(RIGHT_PADDED, ((0, 0), (0, 2)))  # width 7, same bucket
  _greedy(wider, LENGTHS)
  assert sampling.trace_count() == before
  assert sampling.bucket_length(5) == sampling.bucket_length(7) == 8
  assert sampling.bucket_length(9) == 16


def test_filter_top_p_keeps_smallest_set_with_mass_p():
  probs = np.array([0.05, 0.5, 0.15, 0.3])
  logits = jnp.log(jnp.asarray(probs, jnp.float32))[None]
  top_p = jax.jit(sampling.filter_top_p)
  kept = lambda p: np.isfinite(top_p(logits, p)[0]).tolist()
  assert kept(0.4) == [False, True, False, False]
  assert kept(0.75) == [False, True, False, True]
  assert kept(0.9) == [False, True, True, True]
  assert kept(0.99) == [True, True, True, True]


def test_filter_top_k_and_picker():
  logits = jnp.array([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 4.0]])
  kept = np.isfinite(
      jax.jit(sampling.filter_top_k, static_argnums=1)(logits, 2)
  )
  np.testing.assert_array_equal(
      kept, [[False, True, False, True], [True, False, False, True]]
  )
  picker = sampling.make_picker(temperature=1.0, top_k=2)
  draws = jax.jit(jax.vmap(lambda k: picker(logits, k)))(
      jax.random.split(jax.random.key(0), 200)
  )
  assert set(np.asarray(draws[:, 0]).tolist()) == {1, 3}
  assert set(np.asarray(draws[:, 1]).tolist()) == {0, 3}
  greedy = sampling.make_picker(temperature=0.0)
  assert greedy(logits, None).tolist() == [1, 0]
