"""Tests of the transformer LM: shapes, parameter counts, masking, dtypes.

The machine is small: models get numpy-random parameters (no compiled init)
and most tests share one jitted forward on one [3, 10] batch per config.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain import models
from postrain import sharding
from postrain.models import _layers

TINY = models.TransformerConfig.preset('tiny')
# Every optional feature on: untied, biases, QK-norm, post-norms, GeGLU,
# soft-caps, sqrt(D) scaling, sliding window, local theta, llama3 scaling.
SINK = TINY.replace(
    tie_embeddings=False,
    qkv_bias=True,
    qk_norm=True,
    post_norms=True,
    norm_offset=1.0,
    activation='gelu_tanh',
    attn_logit_softcap=5.0,
    final_logit_softcap=3.0,
    scale_embeddings=True,
    query_scale=0.3,
    sliding_window=3,
    sliding_window_pattern=2,
    rope_local_theta=100.0,
    rope_scaling=('llama3', 8.0, 1.0, 4.0, 16),
)


def random_model(cfg, seed=0):
  """A model with numpy-random parameters (biases and norms non-trivial)."""
  return nnx.merge(*models.random_state(cfg, seed))


def _positions(b, t):
  return jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))


def _run(state, tokens, positions, segments, *, graphdef):
  model = nnx.merge(graphdef, state)
  hidden, _ = model.features(tokens, positions, segment_ids=segments)
  return model.unembed(hidden), hidden, model.output_kernel()


_run = jax.jit(_run, static_argnames='graphdef')

# One batch [3, 10] for most tests, so each config compiles once.
_A, _B = [7, 3, 9, 1, 4], [5, 2, 8]
TOKENS = jnp.array(
    [_A + _B + [0, 0], _A + [0] * 5, _B + [0] * 7], jnp.int32
)  # row 0: two packed sequences then padding; rows 1, 2: each alone.
POSITIONS = jnp.array(
    [
        [0, 1, 2, 3, 4, 0, 1, 2, 0, 0],
        [0, 1, 2, 3, 4] + [0] * 5,
        [0, 1, 2] + [0] * 7,
    ],
    jnp.int32,
)
SEGMENTS = jnp.array(
    [[1, 1, 1, 1, 1, 2, 2, 2, 0, 0], [1] * 5 + [0] * 5, [1] * 3 + [0] * 7],
    jnp.int32,
)


@pytest.fixture(scope='module', params=['tiny', 'sink'])
def run(request):
  cfg = {'tiny': TINY, 'sink': SINK}[request.param]
  graphdef, state = nnx.split(random_model(cfg))
  out = _run(state, TOKENS, POSITIONS, SEGMENTS, graphdef=graphdef)
  return (cfg, *out)


def test_forward_shapes_finite(run):
  cfg, logits, hidden, kernel = run
  assert logits.shape == (3, 10, cfg.vocab_size)
  assert logits.dtype == jnp.float32
  assert hidden.shape == (3, 10, cfg.embed_dim)
  assert kernel.shape == (cfg.embed_dim, cfg.vocab_size)
  assert bool(jnp.all(jnp.isfinite(logits)))  # padding positions included
  assert float(jnp.std(logits)) > 0.1
  if cfg.final_logit_softcap:
    assert float(jnp.max(jnp.abs(logits))) <= cfg.final_logit_softcap


def test_packed_row_equals_separate_sequences(run):
  _, logits, _, _ = run
  np.testing.assert_allclose(logits[0, :5], logits[1, :5], atol=1e-5)
  np.testing.assert_allclose(logits[0, 5:8], logits[2, :3], atol=1e-5)
  # Can fail: were segments ignored, B's tokens would also see A's.
  assert float(jnp.max(jnp.abs(logits[0, 5:8] - logits[2, 5:8]))) > 1e-3


def test_unembed_equals_output_kernel_matmul(run):
  cfg, logits, hidden, kernel = run
  expected = _layers.softcap(hidden @ kernel, cfg.final_logit_softcap)
  np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_all_padding_row_is_finite():
  graphdef, state = nnx.split(random_model(TINY))
  logits, _, _ = _run(
      state, TOKENS, POSITIONS, jnp.zeros_like(SEGMENTS), graphdef=graphdef
  )
  assert bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize('name', sorted(models.PRESETS))
def test_num_params_matches_model(name):
  cfg = models.TransformerConfig.preset(name)
  abstract = nnx.eval_shape(lambda: models.Transformer(cfg, rngs=nnx.Rngs(0)))
  leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
  assert sum(x.size for x in leaves) == cfg.num_params()
  assert all(x.dtype == jnp.float32 for x in leaves)


def test_num_params_sink_matches_model():
  abstract = nnx.eval_shape(lambda: models.Transformer(SINK, rngs=nnx.Rngs(0)))
  leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
  assert sum(x.size for x in leaves) == SINK.num_params()


@pytest.mark.parametrize(
    'name, published, rel',
    [
        ('qwen2.5-0.5b', 494e6, 1e-3),  # model card: 0.49B
        ('llama-3.2-1b', 1.236e9, 1e-3),  # 1.23B
        ('qwen2.5-1.5b', 1.54e9, 3e-3),  # 1.54B
        ('gemma-3-1b', 1.0e9, 1e-3),  # 1B
    ],
)
def test_presets_match_published_sizes(name, published, rel):
  n = models.TransformerConfig.preset(name).num_params()
  assert abs(n - published) / published < rel, n


def test_flops_per_token_formula():
  d, f, n, k, h, v = 64, 128, 4, 2, 16, 64
  layer_mm = 2 * d * n * h + 2 * d * k * h + 3 * d * f
  expected = 6 * (2 * layer_mm + d * v) + 2 * 12 * 32 * n * h
  assert TINY.flops_per_token(32) == expected
  local = TINY.replace(sliding_window=8, sliding_window_pattern=2)
  # Layer 0 is local (sees 8 keys), layer 1 global.
  assert TINY.flops_per_token(32) - local.flops_per_token(32) == (
      12 * (32 - 8) * n * h
  )


def test_partitioning_names_are_logical():
  abstract = nnx.eval_shape(lambda: models.Transformer(SINK, rngs=nnx.Rngs(0)))
  specs = nnx.get_partition_spec(nnx.state(abstract, nnx.Param))
  is_spec = lambda x: isinstance(x, jax.sharding.PartitionSpec)
  leaves = jax.tree.leaves(specs, is_leaf=is_spec)
  assert leaves and all(is_spec(s) and len(s) > 0 for s in leaves)
  names = {a for s in leaves for a in s}
  expected = {'embed', 'vocab', 'mlp', 'heads', 'kv_heads', 'head_dim', 'norm'}
  assert names == expected


def test_gradients_finite():
  # One (local) layer keeps the compile short; every feature is still on.
  graphdef, state = nnx.split(random_model(SINK.replace(num_layers=1)))

  @jax.jit
  def grad_fn(state):
    def loss_fn(state):
      logits, _ = nnx.merge(graphdef, state)(
          TOKENS, POSITIONS, segment_ids=SEGMENTS
      )
      return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    return jax.grad(loss_fn)(state)

  leaves = jax.tree.leaves(grad_fn(state))
  assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_bf16_compute_runs_close_to_f32():
  graphdef, state = nnx.split(random_model(TINY))
  bf16_def, _ = nnx.split(random_model(TINY.replace(dtype='bfloat16')))
  logits, hidden, _ = _run(
      state, TOKENS, POSITIONS, SEGMENTS, graphdef=bf16_def
  )
  ref, _, _ = _run(state, TOKENS, POSITIONS, SEGMENTS, graphdef=graphdef)
  assert hidden.dtype == jnp.bfloat16
  assert logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  np.testing.assert_allclose(logits, ref, atol=0.2)


def test_sliding_window_mask():
  pos = jnp.arange(5)[None]
  seg = jnp.ones((1, 5), jnp.int32)
  mask = _layers.attention_mask(seg, pos, pos, seg, pos, pos, 2)[0]
  ones = np.ones((5, 5), bool)
  np.testing.assert_array_equal(mask, np.tril(ones) & ~np.tril(ones, -2))


def test_llama3_rope_scaling():
  base = np.asarray(_layers.rope_frequencies(64, 500000.0, None))
  scaled = np.asarray(
      _layers.rope_frequencies(64, 500000.0, ('llama3', 32.0, 1.0, 4.0, 8192))
  )
  wavelen = 2 * np.pi / base
  high, low = wavelen < 8192 / 4, wavelen > 8192
  mid = ~high & ~low
  assert high.any() and low.any() and mid.any()
  np.testing.assert_allclose(scaled[high], base[high], rtol=1e-6)
  np.testing.assert_allclose(scaled[low], base[low] / 32.0, rtol=1e-6)
  assert np.all(scaled[mid] < base[mid])
  assert np.all(scaled[mid] > base[mid] / 32.0)


@pytest.mark.skipif(jax.device_count() < 8, reason='needs 8 (fake) devices')
def test_sharded_forward_equals_unsharded():
  mesh = sharding.make_mesh([('data', 2), ('fsdp', 2), ('tensor', 2)])
  graphdef, state = nnx.split(random_model(SINK))
  is_spec = lambda x: isinstance(x, jax.sharding.PartitionSpec)
  shardings = jax.tree.map(
      lambda s: sharding.logical_sharding(mesh, tuple(s)),
      nnx.get_partition_spec(state),
      is_leaf=is_spec,
  )
  sharded = jax.device_put(state, shardings)
  assert sharded['embedding'].value.sharding.spec == (
      jax.sharding.PartitionSpec('tensor', 'fsdp')
  )
  batch = [jnp.concatenate([x, x[:1]]) for x in (TOKENS, POSITIONS, SEGMENTS)]
  batch = jax.device_put(batch, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh):
    logits, _, _ = _run(sharded, *batch, graphdef=graphdef)
  ref, _, _ = _run(state, *batch, graphdef=graphdef)
  np.testing.assert_allclose(logits, ref, atol=1e-5)
