"""Tests for postrain/losses/_advantages.py (policy_gradient.md §2, §8)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain.losses import _advantages as adv
from postrain.losses import _reduce as red
from postrain.losses import _policy_gradient as pgl

G = 4


def _np_rloo(r, g):
  r = r.reshape(-1, g)
  return (r - (r.sum(1, keepdims=True) - r) / (g - 1)).reshape(-1)


def test_registry_names():
  assert set(adv.ADVANTAGES) == {
      'reinforce', 'reinforce_baseline', 'rloo', 'grpo', 'dr_grpo', 'gae'}


def test_reinforce_and_baseline():
  r = jnp.array([1., 0., 2.])
  np.testing.assert_allclose(adv.reinforce(r), [1., 0., 2.])
  np.testing.assert_allclose(adv.reinforce_baseline(r, 0.5), [.5, -.5, 1.5])
  b = adv.ema_baseline(jnp.array(1.0), r, decay=0.5)
  np.testing.assert_allclose(b, 0.5 + 0.5 * 1.0)


def test_group_advantages_against_numpy():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    r = rng.normal(size=12)
    got_rloo = adv.rloo(jnp.asarray(r), group_size=G)
    np.testing.assert_allclose(got_rloo, _np_rloo(r, G), atol=1e-12)
    rg = r.reshape(-1, G)
    centred = (rg - rg.mean(1, keepdims=True)).reshape(-1)
    np.testing.assert_allclose(adv.dr_grpo(jnp.asarray(r), group_size=G),
                               centred, atol=1e-12)
    std = np.repeat(rg.std(1, ddof=1), G)
    np.testing.assert_allclose(adv.grpo(jnp.asarray(r), group_size=G),
                               centred / (std + 1e-6), atol=1e-12)


def test_exact_identities():
  with jax.enable_x64(True):
    r = jnp.asarray(np.random.default_rng(1).normal(size=16))
    rloo, dr = adv.rloo(r, group_size=G), adv.dr_grpo(r, group_size=G)
    np.testing.assert_allclose(dr, (G - 1) / G * rloo, atol=1e-10)
    std = jnp.repeat(jnp.std(r.reshape(-1, G), axis=1, ddof=1), G)
    np.testing.assert_allclose(adv.grpo(r, group_size=G) * (std + 1e-6), dr,
                               atol=1e-10)


def test_zero_variance_groups_give_exact_zero():
  r = jnp.array([1., 1., 1., 1., 0., 1., 0., 0.])
  for name in ('rloo', 'grpo', 'dr_grpo'):
    a = adv.ADVANTAGES[name](r, group_size=G)
    assert np.all(np.asarray(a[:4]) == 0.0), name
    assert np.all(np.isfinite(a))
  np.testing.assert_array_equal(adv.zero_variance_groups(r, group_size=G),
                                [True] * 4 + [False] * 4)


def test_rloo_needs_two_samples_and_whole_groups():
  with pytest.raises(ValueError):
    adv.rloo(jnp.ones(3), group_size=1)
  with pytest.raises(ValueError):
    adv.grpo(jnp.ones(6), group_size=4)


# --- GAE ---------------------------------------------------------------------


def _np_gae(r, v, m, gamma, lam):
  """Float64 Python loop: masked tokens carry the running values through."""
  a = np.zeros_like(r)
  for b in range(r.shape[0]):
    next_v = next_a = 0.0
    for t in reversed(range(r.shape[1])):
      if m[b, t]:
        next_a = r[b, t] + gamma * next_v - v[b, t] + gamma * lam * next_a
        next_v = v[b, t]
        a[b, t] = next_a
  return a


def _gae_inputs(seed=0):
  rng = np.random.default_rng(seed)
  r, v = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
  m = np.ones((3, 7))
  m[0, 5:] = 0  # padding
  m[1, 2] = 0  # a hole: carried through unchanged
  m[2, :] = 0  # fully masked row
  return r, v, m


@pytest.mark.parametrize('gamma,lam', [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0)])
def test_gae_scan_equals_python_loop(gamma, lam):
  with jax.enable_x64(True):
    r, v, m = _gae_inputs()
    a, ret = adv.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(m),
                     gamma=gamma, lam=lam, whiten_advantages=False)
    want = _np_gae(r, v, m, gamma, lam)
    np.testing.assert_allclose(a, want, atol=1e-12)
    np.testing.assert_allclose(ret, (want + v) * m, atol=1e-12)


def test_gae_limits():
  with jax.enable_x64(True):
    rng = np.random.default_rng(2)
    r, v = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    m = np.ones((2, 5))
    a1, _ = adv.gae(r, v, m, gamma=1.0, lam=1.0, whiten_advantages=False)
    tail = np.cumsum(r[:, ::-1], axis=1)[:, ::-1]
    np.testing.assert_allclose(a1, tail - v, atol=1e-12)
    a0, _ = adv.gae(r, v, m, gamma=0.9, lam=0.0, whiten_advantages=False)
    v_next = np.concatenate([v[:, 1:], np.zeros((2, 1))], axis=1)
    np.testing.assert_allclose(a0, r + 0.9 * v_next - v, atol=1e-12)


def test_gae_hand_case():
  a, ret = adv.gae(jnp.array([[0., 0., 1.]]), jnp.array([[.5, .5, .5]]),
                   jnp.ones((1, 3)), gamma=1.0, lam=0.5,
                   whiten_advantages=False)
  # δ = [0, 0, .5]; A_2 = .5, A_1 = 0 + .25 = .25, A_0 = .125.
  np.testing.assert_allclose(a, [[.125, .25, .5]], atol=1e-6)
  np.testing.assert_allclose(ret, [[.625, .75, 1.]], atol=1e-6)


def test_gae_masked_equals_sliced_and_whitening():
  r, v, m = _gae_inputs(3)
  m[1, 2] = 1
  a, _ = adv.gae(r, v, m, lam=0.9, whiten_advantages=False)
  a_slice, _ = adv.gae(r[:1, :5], v[:1, :5], m[:1, :5], lam=0.9,
                       whiten_advantages=False)
  np.testing.assert_allclose(a[:1, :5], a_slice, atol=1e-5)
  assert np.all(np.asarray(a[0, 5:]) == 0) and np.all(np.asarray(a[2]) == 0)
  w, _ = adv.gae(r, v, m, lam=0.9)
  valid = m > 0
  np.testing.assert_allclose(np.asarray(w)[valid].mean(), 0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(w)[valid].std(), 1, atol=1e-4)
  assert np.all(np.isfinite(w))
  empty, ret = adv.gae(r, v, np.zeros_like(m))
  assert np.all(np.asarray(empty) == 0) and np.all(np.asarray(ret) == 0)


def test_gae_jit_equals_eager():
  r, v, m = _gae_inputs(4)
  fn = lambda *xs: adv.gae(*xs, lam=0.9)
  np.testing.assert_allclose(jax.jit(fn)(r, v, m)[0], fn(r, v, m)[0],
                             atol=1e-6)


# --- Exact bandit tests (§8) -------------------------------------------------

C = 5
THETA = np.array([0.3, -0.5, 1.0, 0.0, -1.2])
RBAR = np.array([1.0, 0.0, 0.3, -0.7, 2.0])


def _grad_j(theta):
  pi = np.exp(theta - theta.max())
  pi /= pi.sum()
  return pi * (RBAR - pi @ RBAR)


def _surrogate_grad(advantage_fn):
  """θ -> arms [G] -> gradient of the reduced `pg` loss for one group."""
  def loss(theta, arms):
    logp = jax.nn.log_softmax(theta)[arms][:, None]
    a = advantage_fn(jnp.asarray(RBAR)[arms])
    per_token, _ = pgl.pg(logp, a, jnp.ones_like(logp))
    return red.sequence_mean_token_sum(per_token, jnp.ones_like(logp))
  return jax.grad(loss)


def _enumerate(advantage_fn):
  """Exact E[ĝ] over all C^G group draws."""
  theta = jnp.asarray(THETA)
  pi = jax.nn.softmax(theta)
  arms = jnp.asarray(list(itertools.product(range(C), repeat=G)))
  probs = jnp.prod(pi[arms], axis=1)
  grads = jax.jit(jax.vmap(_surrogate_grad(advantage_fn), (None, 0)))(
      theta, arms)
  return np.asarray(probs @ grads)


ESTIMATORS = {
    'reinforce': (adv.reinforce, 1.0),
    'reinforce_baseline': (lambda r: adv.reinforce_baseline(r, 0.7), 1.0),
    'rloo': (lambda r: adv.rloo(r, group_size=G), 1.0),
    'dr_grpo': (lambda r: adv.dr_grpo(r, group_size=G), (G - 1) / G),
}


@pytest.mark.parametrize('name', list(ESTIMATORS))
def test_bandit_expected_gradient_exact(name):
  fn, scale = ESTIMATORS[name]
  with jax.enable_x64(True):
    expected = -_enumerate(fn)  # the loss gradient is −ĝ
    np.testing.assert_allclose(expected, scale * _grad_j(THETA), atol=1e-10)


def test_bandit_equal_rewards_zero_gradient():
  with jax.enable_x64(True):
    arms = jnp.array([2, 2, 2, 2])
    for name in ('rloo', 'grpo', 'dr_grpo'):
      fn = lambda r, n=name: adv.ADVANTAGES[n](r, group_size=G)
      g = jax.jit(_surrogate_grad(fn))(jnp.asarray(THETA), arms)
      assert np.all(np.asarray(g) == 0), name


@pytest.mark.parametrize('name', ['reinforce', 'rloo', 'dr_grpo'])
def test_bandit_monte_carlo_unbiased(name):
  """Vmapped replicates; tolerance 4 standard errors (reported on failure)."""
  fn, scale = ESTIMATORS[name]
  n = 2 ** 15
  with jax.enable_x64(True):
    theta = jnp.asarray(THETA)
    keys = jax.random.split(jax.random.key(0), n)
    sample = lambda k: jax.random.categorical(k, theta, shape=(G,))
    arms = jax.jit(jax.vmap(sample))(keys)
    grads = -np.asarray(jax.jit(jax.vmap(_surrogate_grad(fn), (None, 0)))(
        theta, arms))
  mean, se = grads.mean(0), grads.std(0, ddof=1) / np.sqrt(n)
  target = scale * _grad_j(THETA)
  assert np.all(np.abs(mean - target) <= 4 * se + 1e-12), (mean, target, se)
  # Power: on the largest component, a (G−1)/G rescaling (and a fortiori a
  # sign flip) moves the mean by more than twice the tolerance.
  k = np.argmax(np.abs(target))
  assert 8 * se[k] < (1 - (G - 1) / G) * np.abs(target[k]), se
