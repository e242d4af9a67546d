"""The generic step: accumulation, clipping, non-finite guard, checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from postrain import train


def _objective(params, batch, rng):
  del rng
  pred = batch['x'] @ params['w']
  loss = jnp.mean(jnp.square(pred - batch['y']))
  return loss, {'mse': loss}


def _setup(seed=0, b=8):
  rng = np.random.default_rng(seed)
  params = {'w': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
  batch = {'x': jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
           'y': jnp.asarray(rng.normal(size=(b, 2)), jnp.float32)}
  return params, batch


def test_grad_accumulation_equals_full_batch():
  params, batch = _setup()
  opt = optax.sgd(0.1)
  full = jax.jit(train.make_train_step(_objective, opt))
  accum = jax.jit(train.make_train_step(_objective, opt, grad_accum=4))
  s1, m1 = full(train.init_state(params, opt), batch, jax.random.key(0))
  s4, m4 = accum(train.init_state(params, opt), batch, jax.random.key(0))
  np.testing.assert_allclose(s4.params['w'], s1.params['w'], rtol=1e-6)
  np.testing.assert_allclose(m4['loss'], m1['loss'], rtol=1e-6)


def test_grad_norm_logged_and_clipped():
  params, batch = _setup(1)
  opt = train.make_optimizer('adamw', lambda s: 0.0, grad_clip=1e-3,
                             weight_decay=0.0)
  step = jax.jit(train.make_train_step(_objective, opt))
  _, metrics = step(train.init_state(params, opt), batch, jax.random.key(0))
  g = jax.grad(lambda p: _objective(p, batch, None)[0])(params)['w']
  np.testing.assert_allclose(metrics['grad_norm'],
                             np.sqrt(np.sum(np.square(g))), rtol=1e-5)


def test_nonfinite_step_leaves_state_unchanged():
  params, batch = _setup(2)
  batch['y'] = batch['y'].at[0, 0].set(jnp.nan)
  opt = optax.adam(0.1)
  state = train.init_state(params, opt)
  new, metrics = jax.jit(train.make_train_step(_objective, opt))(
      state, batch, jax.random.key(0))
  assert float(metrics['finite']) == 0.0
  np.testing.assert_array_equal(new.params['w'], params['w'])
  for a, b in zip(jax.tree.leaves(new.opt_state),
                  jax.tree.leaves(state.opt_state)):
    np.testing.assert_array_equal(a, b)


def test_checkpoint_round_trip(tmp_path):
  params, batch = _setup(3)
  opt = optax.adam(0.1)
  state = train.init_state(params, opt)
  state, _ = jax.jit(train.make_train_step(_objective, opt))(
      state, batch, jax.random.key(0))
  ckpt = train.Checkpointer(str(tmp_path / 'ckpt'), every=1)
  assert ckpt.save(1, state, {'data': {'index': 7}})
  ckpt.wait()
  abstract = jax.eval_shape(lambda: state)
  abstract = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(
          s.shape, s.dtype,
          sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
      abstract)
  restored, meta = ckpt.restore(abstract)
  ckpt.close()
  assert meta == {'data': {'index': 7}}
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
