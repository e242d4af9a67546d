"""Tests for postrain/losses/_kl.py (spec: policy_gradient.md §4, §8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain.losses import _kl

THETA = np.array([0.3, -0.5, 1.0, 0.0, -1.2])
REF = np.array([0.0, 0.2, -0.4, 0.5, 0.1])
RBAR = np.array([1.0, 0.0, 0.3, -0.7, 2.0])


def _np_estimators(logp, ref):
  d = logp - ref
  return dict(k1=d, k2=0.5 * d ** 2, k3=np.exp(-d) + d - 1,
              k3_st=np.exp(-d) + d - 1)


def test_registry_names():
  assert {'k1', 'k2', 'k3'} <= set(_kl.KL_ESTIMATORS)


@pytest.mark.parametrize('name', ['k1', 'k2', 'k3', 'k3_st'])
def test_values_against_numpy_and_masking(name):
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    logp, ref = rng.normal(size=(2, 2, 5))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], float)
    got = _kl.KL_ESTIMATORS[name](logp, ref, mask)
    np.testing.assert_allclose(got, _np_estimators(logp, ref)[name] * mask,
                               atol=1e-12)
    sliced = _kl.KL_ESTIMATORS[name](logp[:1, :3], ref[:1, :3], mask[:1, :3])
    np.testing.assert_allclose(got[:1, :3], sliced, atol=1e-12)


@pytest.mark.parametrize('name', ['k1', 'k2', 'k3', 'k3_st'])
def test_extreme_and_fully_masked_are_finite(name):
  fn = _kl.KL_ESTIMATORS[name]
  logp = jnp.array([[-1e4, 0.0, -jnp.inf], [-jnp.inf, -jnp.inf, -jnp.inf]])
  ref = jnp.array([[0.0, -1e4, -jnp.inf], [0.0, 0.0, 0.0]])
  mask = jnp.array([[1., 1., 0.], [0., 0., 0.]])
  val = fn(logp, ref, mask)
  grad = jax.grad(lambda x: fn(x, ref, mask).sum())(logp)
  assert np.all(np.isfinite(val)) and np.all(np.isfinite(grad))
  assert np.all(np.asarray(val[1]) == 0) and np.all(np.asarray(grad[1]) == 0)
  if name.startswith('k3'):
    assert np.all(np.asarray(val) <= 10.0)


def test_k3_nonnegative_and_st_gradient():
  d = jnp.linspace(-5, 5, 11)[None]
  zeros, ones = jnp.zeros_like(d), jnp.ones_like(d)
  assert np.all(np.asarray(_kl.k3(d, zeros, ones)) >= 0)
  np.testing.assert_allclose(_kl.k3_st(d, zeros, ones), _kl.k3(d, zeros, ones),
                             rtol=1e-6)
  g_st = jax.grad(lambda x: _kl.k3_st(x, zeros, ones).sum())(d)
  g_k2 = jax.grad(lambda x: _kl.k2(x, zeros, ones).sum())(d)
  np.testing.assert_allclose(g_st, g_k2, rtol=1e-6)


def test_jit_equals_eager_and_bf16():
  rng = np.random.default_rng(1)
  logp, ref = rng.normal(size=(2, 3, 4)).astype(np.float32)
  mask = np.ones((3, 4), np.float32)
  for name, fn in _kl.KL_ESTIMATORS.items():
    np.testing.assert_allclose(jax.jit(fn)(logp, ref, mask),
                               fn(logp, ref, mask), rtol=1e-6, err_msg=name)
    low = fn(jnp.asarray(logp, jnp.bfloat16), jnp.asarray(ref, jnp.bfloat16),
             mask)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, fn(logp, ref, mask), atol=0.05,
                               err_msg=name)


# --- Exact bandit table (§4): expectations and pathwise gradients ----------


def _kl_np(p, q):
  return float(np.sum(p * np.log(p / q)))


def _expectation_and_grad(name):
  """E_{y~π}[k(y)] and E_{y~π}[∇_θ k(y)] by enumeration over C arms."""
  ref_logp = jax.nn.log_softmax(jnp.asarray(REF))
  fn = _kl.KL_ESTIMATORS[name]

  def per_arm(theta):
    logp = jax.nn.log_softmax(theta)
    return fn(logp[:, None], ref_logp[:, None], jnp.ones((len(THETA), 1)))[:, 0]

  theta = jnp.asarray(THETA)
  pi = jax.nn.softmax(theta)
  values = jax.jit(per_arm)(theta)
  jac = jax.jit(jax.jacobian(per_arm))(theta)  # [C arms, C params], y fixed
  return float(pi @ values), np.asarray(pi @ jac)


def test_estimator_table_exact():
  with jax.enable_x64(True):
    pi = np.asarray(jax.nn.softmax(jnp.asarray(THETA)))
    ref = np.asarray(jax.nn.softmax(jnp.asarray(REF)))
    kl_fwd = lambda th: jnp.sum(jax.nn.softmax(th) * (
        jax.nn.log_softmax(th) - jnp.log(jnp.asarray(ref))))
    kl_rev = lambda th: jnp.sum(jnp.asarray(ref) * (
        jnp.log(jnp.asarray(ref)) - jax.nn.log_softmax(th)))
    g_fwd = np.asarray(jax.grad(kl_fwd)(jnp.asarray(THETA)))
    g_rev = np.asarray(jax.grad(kl_rev)(jnp.asarray(THETA)))
    kl = _kl_np(pi, ref)
    e1, g1 = _expectation_and_grad('k1')
    e2, g2 = _expectation_and_grad('k2')
    e3, g3 = _expectation_and_grad('k3')
    np.testing.assert_allclose(e1, kl, atol=1e-12)
    np.testing.assert_allclose(e3, kl, atol=1e-12)
    assert abs(e2 - kl) > 1e-4  # k2 is only second-order accurate
    np.testing.assert_allclose(g1, 0.0, atol=1e-12)
    np.testing.assert_allclose(g2, g_fwd, atol=1e-12)  # ∇KL(π‖π_ref)
    np.testing.assert_allclose(g3, g_rev, atol=1e-12)  # ∇KL(π_ref‖π)
    assert np.max(np.abs(g_fwd - g_rev)) > 1e-3  # the two really differ


def test_kl_in_reward_expected_gradient_exact():
  """REINFORCE on r − β·k1 has E[ĝ] = ∇(J − β·KL(π‖π_ref)) (one sample)."""
  beta = 0.3
  with jax.enable_x64(True):
    theta = jnp.asarray(THETA)
    ref_logp = jax.nn.log_softmax(jnp.asarray(REF))

    def loss(th, arm):
      logp = jax.nn.log_softmax(th)[arm][None, None]
      old = jax.lax.stop_gradient(logp)
      r = _kl.kl_in_reward(jnp.asarray(RBAR)[arm][None, None], old,
                           ref_logp[arm][None, None], jnp.ones((1, 1)),
                           beta=beta)
      return -(r * logp).sum()

    pi = jax.nn.softmax(theta)
    grads = jax.jit(jax.vmap(jax.grad(loss), (None, 0)))(theta, jnp.arange(5))
    expected = -np.asarray(pi @ grads)
    obj = lambda th: (jax.nn.softmax(th) @ jnp.asarray(RBAR) - beta * jnp.sum(
        jax.nn.softmax(th) * (jax.nn.log_softmax(th) - ref_logp)))
    np.testing.assert_allclose(expected, jax.grad(obj)(theta), atol=1e-12)


def test_kl_in_reward_values_and_no_gradient():
  r = jnp.array([[0., 1.]])
  old = jnp.log(jnp.array([[.5, .5]]))
  ref = jnp.log(jnp.array([[.25, .5]]))
  got = _kl.kl_in_reward(r, old, ref, jnp.ones((1, 2)), beta=1.0)
  np.testing.assert_allclose(got, [[-np.log(2), 1.]], rtol=1e-6)
  g = jax.grad(lambda o: _kl.kl_in_reward(r, o, ref, jnp.ones((1, 2))).sum())(
      old)
  assert np.all(np.asarray(g) == 0)


def test_kl_in_loss_scales_estimator():
  logp, ref = jnp.array([[-1., -2.]]), jnp.array([[-2., -1.]])
  m = jnp.array([[1., 0.]])
  np.testing.assert_allclose(_kl.kl_in_loss(logp, ref, m, beta=0.5),
                             0.5 * _kl.k3(logp, ref, m))
  np.testing.assert_allclose(
      _kl.kl_in_loss(logp, ref, m, beta=2., estimator='k2'),
      2. * _kl.k2(logp, ref, m))


def test_adaptive_kl_coef():
  beta = jnp.array(0.1)
  # KL far above target: proportional error clipped at +0.2.
  np.testing.assert_allclose(
      _kl.adaptive_kl_coef(beta, 10.0, kl_target=1.0), 0.1 * (1 + 0.1 * 0.2),
      rtol=1e-6)
  np.testing.assert_allclose(
      _kl.adaptive_kl_coef(beta, 0.9, kl_target=1.0, k_beta=0.5),
      0.1 * (1 - 0.1 * 0.5), rtol=1e-5)
  np.testing.assert_allclose(
      _kl.adaptive_kl_coef(beta, 1.0, kl_target=1.0), 0.1, rtol=1e-6)
