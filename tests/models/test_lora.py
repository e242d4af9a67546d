"""LoRA: identity at init, merged == unmerged, only adapters train."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from postrain import models
from postrain import recipes
from postrain import sharding
from postrain import train

CFG = models.TransformerConfig.preset('tiny').replace(
    qkv_bias=True, tie_embeddings=False)
TOKENS = jax.random.randint(jax.random.key(0), (2, 12), 0, CFG.vocab_size)
ALL = tuple(models.LORA_TARGETS)


def _model():
  return nnx.merge(*models.random_state(CFG, seed=1))


@jax.jit
def _logits(graphdef_state, tokens):
  return nnx.merge(*graphdef_state)(tokens)[0]


def _forward(model):
  return np.asarray(_logits(nnx.split(model), TOKENS))


def _randomize_b(model, seed=0):
  """Non-zero B everywhere (a fresh adapter has B = 0)."""
  adapters, base = models.split_lora(nnx.state(model))
  keys = iter(jax.random.split(jax.random.key(seed), 64))
  adapters = jax.tree.map(
      lambda x: 0.3 * jax.random.normal(next(keys), x.shape, x.dtype),
      adapters)
  nnx.update(model, adapters)
  return model


def test_zero_b_leaves_output_unchanged():
  model = _model()
  before = _forward(model)
  models.apply_lora(model, rank=4, alpha=8.0, targets=ALL)
  adapters, _ = models.split_lora(nnx.state(model))
  assert len(jax.tree.leaves(adapters)) == 2 * len(ALL) * CFG.num_layers
  np.testing.assert_array_equal(_forward(model), before)


def test_merged_equals_unmerged_and_numpy_delta():
  model = _randomize_b(models.apply_lora(
      _model(), rank=3, alpha=6.0, targets=('q_proj', 'o', 'down')))
  lora = model.layers[1].attn.lora['o']
  a, b = np.asarray(lora.a[...], np.float64), np.asarray(lora.b[...],
                                                         np.float64)
  want_o = (np.asarray(model.layers[1].attn.o[...], np.float64)
            + 2.0 * np.einsum('nhr,rd->nhd', a, b))
  unmerged = _forward(model)
  assert np.abs(unmerged - _forward(_model())).max() > 1e-2  # B matters
  models.merge_lora(model)
  assert not models.split_lora(nnx.state(model))[0]  # no adapters left
  np.testing.assert_allclose(model.layers[1].attn.o[...], want_o, atol=1e-6)
  np.testing.assert_allclose(_forward(model), unmerged, atol=1e-4)


def test_bad_target_is_named():
  with pytest.raises(ValueError, match="'qq'"):
    models.apply_lora(_model(), rank=2, alpha=2.0, targets=('q', 'qq'))


def test_adapters_shard_by_logical_names():
  model = models.apply_lora(_model(), rank=4, alpha=4.0, targets=('q',))
  adapters, _ = models.split_lora(nnx.state(model))
  mesh = sharding.make_mesh([('data', 2), ('fsdp', 2), ('tensor', 2)])
  shardings = sharding.tree_shardings(mesh, adapters)
  q = shardings['layers'][0]['attn']['lora']['q']
  assert q['a'].get_value().spec == sharding.logical_to_spec(('embed', None))
  assert q['b'].get_value().spec == sharding.logical_to_spec(
      (None, 'heads', 'head_dim'))


def test_dropout_masks_follow_the_rng_and_view_turns_them_off():
  model = _randomize_b(models.apply_lora(
      _model(), rank=4, alpha=8.0, targets=('q', 'up'), dropout=0.5))
  graphdef, state = nnx.split(model)
  adapters, base = models.split_lora(state)
  run = lambda rng: np.asarray(_logits(
      (graphdef, models.combine_lora(adapters, base, rng)), TOKENS))
  np.testing.assert_array_equal(run(jax.random.key(1)),
                                run(jax.random.key(1)))
  assert np.abs(run(jax.random.key(1)) - run(jax.random.key(2))).max() > 1e-3
  plain = _randomize_b(models.apply_lora(
      _model(), rank=4, alpha=8.0, targets=('q', 'up')))
  np.testing.assert_array_equal(
      _forward(nnx.view(model, deterministic=True)), _forward(plain))


def test_only_adapters_train():
  model = models.apply_lora(_model(), rank=4, alpha=8.0, targets=ALL,
                            dropout=0.1)
  graphdef, state = nnx.split(model)
  adapters, base = models.split_lora(state)
  optimizer = optax.adam(1e-2)
  ts = train.init_state(adapters, optimizer, extra={'base': base})
  step = jax.jit(train.make_train_step(
      recipes.sft.make_objective(graphdef), optimizer, frozen_key='base',
      combine=models.combine_lora))
  batch = dict(inputs=TOKENS[:, :-1], targets=TOKENS[:, 1:],
               positions=jnp.broadcast_to(jnp.arange(11), (2, 11)),
               segment_ids=jnp.ones((2, 11), jnp.int32),
               loss_mask=jnp.ones((2, 11), jnp.float32))
  losses = []
  for i in range(4):
    ts, metrics = step(ts, batch, jax.random.key(i))
    losses.append(float(metrics['loss']))
  assert losses[-1] < losses[0]
  raw = lambda x: (jax.random.key_data(x)
                   if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(raw(x), raw(y)),
               ts.extra['base'], base)
  changed = jax.tree.map(lambda x, y: bool(np.any(x != y)), ts.params,
                         adapters)
  assert all(jax.tree.leaves(changed))  # every A and B moved
  # Adam's moments mirror the adapters and nothing else.
  adam = ts.opt_state[0]
  for moment in (adam.mu, adam.nu):
    assert jax.tree.structure(moment) == jax.tree.structure(adapters)
  with pytest.raises(ValueError, match='go together'):
    train.make_train_step(recipes.sft.make_objective(graphdef), optimizer,
                          frozen_key='base')
