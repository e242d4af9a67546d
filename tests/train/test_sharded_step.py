"""A data×fsdp×tensor-sharded SFT step equals the single-device step."""

from flax import nnx
import jax
import numpy as np
import optax

from postrain import models
from postrain import recipes
from postrain import sharding
from postrain import train


def _batch(cfg, b=8, t=16, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, cfg.vocab_size, (b, t + 1))
  mask = (np.arange(t)[None] >= 5).astype(np.float32).repeat(b, 0)
  return dict(inputs=tokens[:, :-1].astype(np.int32),
              targets=tokens[:, 1:].astype(np.int32),
              positions=np.broadcast_to(np.arange(t), (b, t)).astype(np.int32),
              segment_ids=np.ones((b, t), np.int32), loss_mask=mask)


def _run(mesh, cfg, batch, steps=2):
  opt = optax.adamw(1e-2)
  graphdef, _ = nnx.split(nnx.eval_shape(
      lambda: models.Transformer(cfg, rngs=nnx.Rngs(0))))

  def init(rng):
    params = nnx.state(models.Transformer(cfg, rngs=nnx.Rngs(rng)))
    return train.init_state(params, opt)

  put = lambda x: jax.device_put(x, sharding.batch_sharding(mesh))
  with sharding.use_mesh(mesh):
    shardings = sharding.tree_shardings(
        mesh, jax.eval_shape(init, jax.random.key(0)))
    state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
    step = jax.jit(train.make_train_step(
        recipes.sft.make_objective(graphdef, chunk_size=8), opt),
                   out_shardings=(shardings, None), donate_argnums=0)
    for i in range(steps):
      state, metrics = step(state, jax.tree.map(put, batch),
                            jax.random.key(i))
  return state, metrics


def test_sharded_step_equals_single_device():
  assert jax.device_count() == 8, 'tests/conftest.py sets 8 CPU devices'
  cfg = models.TransformerConfig.preset('tiny').replace(dtype='float32')
  batch = _batch(cfg)
  one = sharding.make_mesh([('data', 1)], devices=jax.devices()[:1])
  many = sharding.make_mesh([('data', 2), ('fsdp', 2), ('tensor', 2)])
  s1, m1 = _run(one, cfg, batch)
  s8, m8 = _run(many, cfg, batch)
  emb = s8.params['embedding']
  assert emb.value.sharding.spec != jax.sharding.PartitionSpec(), (
      'parameters should actually be sharded')
  np.testing.assert_allclose(m8['loss'], m1['loss'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s8.params), jax.tree.leaves(s1.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4,
                               atol=2e-5)
