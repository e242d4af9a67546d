"""Tests for the policy-gradient losses, reducers, IS corrections and reward
transforms (spec: policy_gradient.md §1, §3, §5–§8)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain.losses import _advantages as adv
from postrain.losses import _pg_corrections as cor
from postrain.losses import _reduce as red
from postrain.losses import _pg_rewards as rew
from postrain.losses import _policy_gradient as pgl

RAGGED = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0],
                   [1, 1, 1, 1, 1]], float)


def _rand(*shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape)


def test_registry_names():
  assert set(pgl.POLICY_LOSSES) == {
      'pg', 'ppo_clip', 'gspo', 'topr', 'w_reinforce', 'nft', 'redi'}
  assert set(cor.CORRECTIONS) == {'tis_token', 'tis_seq', 'mis_seq',
                                  'geo_filter'}
  assert {'token_mean', 'sequence_mean_token_mean', 'sequence_mean_token_sum',
          'sequence_mean_token_sum_norm'} <= set(red.REDUCERS)


# --- Reducers (§1) -----------------------------------------------------------


def test_reducers_against_numpy():
  with jax.enable_x64(True):
    loss, m = _rand(4, 5), RAGGED
    n, valid = m.sum(1), m.sum(1) > 0
    ref = {
        'token_mean': (loss * m).sum() / m.sum(),
        'sequence_mean_token_mean':
            ((loss * m).sum(1)[valid] / n[valid]).sum() / valid.sum(),
        'sequence_mean_token_sum': (loss * m).sum() / valid.sum(),
        'sequence_mean_token_sum_norm': (loss * m).sum() / valid.sum() / 5,
    }
    for name, want in ref.items():
      np.testing.assert_allclose(red.REDUCERS[name](loss, m), want,
                                 atol=1e-12, err_msg=name)
    v = np.array([1., 0., 1., 1.])
    np.testing.assert_allclose(red.example_mean(loss[:, 0], v),
                               (loss[:, 0] * v).sum() / 3, atol=1e-12)


def test_reducer_identities_full_mask():
  with jax.enable_x64(True):
    loss, m = _rand(3, 6, seed=1), np.ones((3, 6))
    tm = red.token_mean(loss, m)
    np.testing.assert_allclose(red.sequence_mean_token_mean(loss, m), tm,
                               atol=1e-12)
    np.testing.assert_allclose(red.sequence_mean_token_sum(loss, m), 6 * tm,
                               atol=1e-12)
    np.testing.assert_allclose(
        red.sequence_mean_token_sum_norm(loss, m, norm=6), tm, atol=1e-12)


def test_reducers_masked_equals_sliced_and_empty():
  loss = _rand(4, 5, seed=2)
  loss[RAGGED == 0] = np.nan  # garbage under the mask must not leak
  for name in ('token_mean', 'sequence_mean_token_mean',
               'sequence_mean_token_sum'):
    fn = red.REDUCERS[name]
    np.testing.assert_allclose(fn(loss, RAGGED), fn(loss[[0, 1, 3]],
                                                    RAGGED[[0, 1, 3]]),
                               rtol=1e-6, err_msg=name)
    zero = jnp.zeros((2, 5))
    assert float(fn(loss[:2], zero)) == 0.0
    g = jax.grad(lambda x: fn(x, zero))(jnp.ones((2, 5)))
    assert np.all(np.asarray(g) == 0)
  counts = red.valid_counts(jnp.zeros((2, 5)))
  assert float(counts['tokens']) == 0 and float(counts['sequences']) == 0
  counts = red.valid_counts(RAGGED)
  assert float(counts['tokens']) == 11 and float(counts['sequences']) == 3


# --- pg and ppo_clip (§3) ----------------------------------------------------


def _ppo_grad(logp, old, a, **kw):
  return jax.grad(lambda x: pgl.ppo_clip(x, old, a, jnp.ones_like(x),
                                         **kw)[0].sum())(logp)


# ratio, A, loss, d loss / d logp, clipped, dual-clipped
PPO_CASES = np.array([
    (1.5, 1.0, -1.2, 0.0, 1, 0),  # A>0, ρ>1+ε: clipped, no gradient
    (0.5, 1.0, -0.5, -0.5, 0, 0),  # A>0, ρ<1−ε: unclipped (pessimistic)
    (0.5, -1.0, 0.8, 0.0, 1, 0),  # A<0, ρ<1−ε: clipped
    (2.0, -1.0, 2.0, 2.0, 0, 0),  # A<0, 1+ε<ρ<c: unclipped
    (5.0, -1.0, 3.0, 0.0, 0, 1),  # A<0, ρ>c: dual clip −A·c, no gradient
    (1.1, 2.0, -2.2, -2.2, 0, 0),  # inside the trust region
])


def test_ppo_clip_hand_cases():
  ratio, a, loss, grad, clip, lower = PPO_CASES.T
  logp = jnp.log(jnp.asarray(ratio, jnp.float32))[:, None]
  old, adv_ = jnp.zeros_like(logp), jnp.asarray(a, jnp.float32)
  got, diag = pgl.ppo_clip(logp, old, adv_, jnp.ones_like(logp))
  np.testing.assert_allclose(got[:, 0], loss, rtol=1e-6)
  np.testing.assert_allclose(_ppo_grad(logp, old, adv_)[:, 0], grad,
                             atol=1e-6)
  np.testing.assert_array_equal(diag['pg_clipfrac'][:, 0], clip)
  np.testing.assert_array_equal(diag['pg_clipfrac_lower'][:, 0], lower)
  np.testing.assert_allclose(diag['ratio'][:, 0], ratio, rtol=1e-6)
  np.testing.assert_allclose(diag['ppo_kl'][:, 0], -np.log(ratio), rtol=1e-5)


def test_ppo_clip_asymmetric_and_no_dual():
  old, one = jnp.zeros((1, 1)), jnp.ones((1, 1))
  loss = lambda r, a, **kw: float(pgl.ppo_clip(
      jnp.log(jnp.array([[r]])), old, jnp.array([a]), one, **kw)[0][0, 0])
  np.testing.assert_allclose(loss(1.25, 1., eps_high=0.28), -1.25, rtol=1e-6)
  np.testing.assert_allclose(loss(1.4, 1., eps_high=0.28), -1.28, rtol=1e-6)
  np.testing.assert_allclose(loss(5., -1., dual_clip=None), 5., rtol=1e-6)
  with pytest.raises(ValueError):
    loss(1., 1., dual_clip=1.0)


def _np_ppo(logp, old, a, m, el=0.2, eh=0.2, c=3.0):
  ratio = np.exp(np.clip(logp - old, -20, 20))
  a = a[:, None]
  loss = np.maximum(-a * ratio, -a * np.clip(ratio, 1 - el, 1 + eh))
  loss = np.where(a < 0, np.minimum(loss, -a * c), loss)
  return loss * m


def test_ppo_clip_against_numpy_and_masked():
  with jax.enable_x64(True):
    logp, old = -np.abs(_rand(2, 4, 5, seed=3))
    logp = old + _rand(4, 5, seed=4)  # ratios spanning all branches
    a = np.array([1.0, -0.5, -2.0, 0.7])
    got, _ = pgl.ppo_clip(logp, old, a, RAGGED)
    np.testing.assert_allclose(got, _np_ppo(logp, old, a, RAGGED), atol=1e-12)
    pad = np.where(RAGGED > 0, logp, -np.inf)
    got_inf, diag = pgl.ppo_clip(pad, old, a, RAGGED)
    np.testing.assert_allclose(got_inf, got, atol=1e-12)
    assert all(np.all(np.isfinite(v)) for v in diag.values())


def test_ppo_clip_at_ratio_one_equals_pg():
  logp, a = -np.abs(_rand(4, 5, seed=5)), _rand(4, seed=6)
  g_ppo = jax.grad(lambda x: red.token_mean(pgl.ppo_clip(
      x, jax.lax.stop_gradient(x), a, RAGGED)[0], RAGGED))(logp)
  g_pg = jax.grad(lambda x: red.token_mean(pgl.pg(x, a, RAGGED)[0],
                                           RAGGED))(logp)
  np.testing.assert_allclose(g_ppo, g_pg, atol=1e-7)
  assert np.max(np.abs(g_pg)) > 0.01


def test_pg_against_numpy_with_weights():
  with jax.enable_x64(True):
    logp, a, w = -np.abs(_rand(4, 5)), _rand(4, seed=1), np.abs(_rand(4, 5))
    got, _ = pgl.pg(logp, a, RAGGED, weights=w)
    np.testing.assert_allclose(got, -w * a[:, None] * logp * RAGGED,
                               atol=1e-12)
    g = jax.grad(lambda aa: pgl.pg(logp, aa, RAGGED)[0].sum())(a)
    assert np.all(np.asarray(g) == 0)  # advantages are stop-gradient


# --- Value loss --------------------------------------------------------------


def test_value_loss_cases():
  v = jnp.array([[1.1, 2.0, 1.5, 0.0]])
  v_old = jnp.array([[1.0, 1.0, 1.0, 0.0]])
  ret = jnp.array([[0.0, 0.0, 2.0, 5.0]])
  m = jnp.array([[1., 1., 1., 0.]])
  got, diag = pgl.value_loss(v, v_old, ret, m)
  # within ε: ½(V−R)²; V=2 → max(4, 1.44); V=1.5 → max(.25, .64).
  np.testing.assert_allclose(got, [[0.605, 2.0, 0.32, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(diag['vf_clipfrac'], [[0, 0, 1, 0]])
  inside = jnp.array([[0.9, 1.2]])
  got, _ = pgl.value_loss(inside, jnp.ones((1, 2)), jnp.array([[3., -1.]]),
                          jnp.ones((1, 2)))
  np.testing.assert_allclose(got, 0.5 * (inside - jnp.array([[3., -1.]])) ** 2,
                             rtol=1e-6)
  np.testing.assert_allclose(pgl.explained_variance(ret, ret, m), 1.0)
  assert float(pgl.explained_variance(v, ret, jnp.zeros_like(m))) == 0.0


# --- GSPO --------------------------------------------------------------------


def test_gspo_value_against_numpy():
  with jax.enable_x64(True):
    old = -np.abs(_rand(4, 5, seed=7))
    logp = old + 1e-3 * _rand(4, 5, seed=8)
    a = np.array([1.0, -1.0, 0.5, -0.3])
    got, diag = pgl.gspo(logp, old, a, RAGGED)
    n = np.maximum(RAGGED.sum(1), 1)
    s = np.exp(((logp - old) * RAGGED).sum(1) / n)[:, None]
    want = np.maximum(-a[:, None] * s,
                      -a[:, None] * np.clip(s, 1 - 3e-4, 1 + 4e-4)) * RAGGED
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert np.all(np.isfinite(diag['ratio']))


def test_gspo_on_policy_equals_ppo_clip():
  logp, a = -np.abs(_rand(4, 5, seed=9)), _rand(4, seed=10)

  def grad(kernel):
    f = lambda x: red.sequence_mean_token_mean(
        kernel(x, jax.lax.stop_gradient(x), a, RAGGED)[0], RAGGED)
    return jax.grad(f)(logp)

  np.testing.assert_allclose(grad(pgl.gspo), grad(pgl.ppo_clip), atol=1e-7)


# --- TOPR --------------------------------------------------------------------


def test_topr_on_policy_equals_pg():
  logp, r = -np.abs(_rand(4, 5, seed=11)), np.array([1., -1., -1., 1.])
  for c in (0.0, 0.3):
    g_topr = jax.grad(lambda x: pgl.topr(x, jax.lax.stop_gradient(x), r,
                                         RAGGED, baseline=c)[0].sum())(logp)
    g_pg = jax.grad(lambda x: pgl.pg(x, r - c, RAGGED)[0].sum())(logp)
    np.testing.assert_allclose(g_topr, g_pg, atol=1e-7)


def test_topr_weights_and_extremes():
  m = jnp.ones((3, 2))
  logp = jnp.array([[-1., -1.], [-1., -1.], [500., 500.]])
  mu = jnp.array([[-2., -2.], [-0.5, -0.5], [-500., -500.]])
  r = jnp.array([-1., -1., -1.])
  loss, diag = pgl.topr(logp, mu, r, m)
  w = np.asarray(diag['is_weight'][:, 0])
  np.testing.assert_allclose(w, [1.0, np.exp(-1.0), 1.0], rtol=1e-6)
  assert np.all(w <= 1.0) and np.all(np.isfinite(loss))
  # positives never importance-weighted
  _, diag = pgl.topr(logp, mu, -r, m)
  np.testing.assert_allclose(diag['is_weight'], 1.0)


# --- W-REINFORCE (PSR/NSR) ---------------------------------------------------


def test_w_reinforce_lambda_one_is_reinforce():
  logp, r = -np.abs(_rand(4, 5, seed=12)), np.array([1., -1., 1., -1.])
  got, _ = pgl.w_reinforce(logp, r, RAGGED, lam=1.0)
  np.testing.assert_allclose(got, pgl.pg(logp, r, RAGGED)[0], rtol=1e-6)
  psr, _ = pgl.w_reinforce(logp, r, RAGGED, lam=1.0, neg_weight=0.0)
  nsr, _ = pgl.w_reinforce(logp, r, RAGGED, lam=0.0)
  np.testing.assert_allclose(0.1 * psr + nsr,
                             pgl.w_reinforce(logp, r, RAGGED)[0], rtol=1e-6)


def test_nsr_logit_gradient_is_e_y_minus_pi():
  z = jnp.array([0.2, -1.0, 0.7, 0.0])
  y = 2
  f = lambda z: pgl.w_reinforce(jax.nn.log_softmax(z)[y][None, None],
                                jnp.array([-1.]), jnp.ones((1, 1)),
                                lam=0.0)[0].sum()
  pi = jax.nn.softmax(z)
  np.testing.assert_allclose(jax.grad(f)(z), jnp.eye(4)[y] - pi, atol=1e-6)


CORRECT = np.array([1., 0., 1., 0., 0.])
THETA = np.array([0.3, -0.5, 1.0, 0.0, -1.2])


def _grad_p_correct(theta):
  pi = np.exp(theta - theta.max())
  pi /= pi.sum()
  return pi * (CORRECT - pi @ CORRECT)


def _w_reinforce_grad(theta, arms, lam):
  def loss(th):
    logp = jax.nn.log_softmax(th)[arms][:, None]
    r = 2 * jnp.asarray(CORRECT)[arms] - 1
    per_tok, _ = pgl.w_reinforce(logp, r, jnp.ones_like(logp), lam=lam)
    return red.sequence_mean_token_sum(per_tok, jnp.ones_like(logp))
  return jax.grad(loss)(theta)


@pytest.mark.parametrize('lam', [0.1, 1.0])
def test_w_reinforce_expected_gradient_exact(lam):
  with jax.enable_x64(True):
    theta = jnp.asarray(THETA)
    pi = jax.nn.softmax(theta)
    grads = jax.jit(jax.vmap(lambda a: _w_reinforce_grad(theta, a[None], lam)))(
        jnp.arange(5))
    np.testing.assert_allclose(-(pi @ grads), (1 + lam) *
                               _grad_p_correct(THETA), atol=1e-12)


def test_w_reinforce_monte_carlo_unbiased():
  n, lam = 2 ** 14, 0.1
  with jax.enable_x64(True):
    theta = jnp.asarray(THETA)
    keys = jax.random.split(jax.random.key(1), n)
    sample = lambda k: jax.random.categorical(k, theta, shape=(4,))
    arms = jax.jit(jax.vmap(sample))(keys)
    grads = -np.asarray(jax.jit(jax.vmap(
        lambda a: _w_reinforce_grad(theta, a, lam)))(arms))
  mean, se = grads.mean(0), grads.std(0, ddof=1) / np.sqrt(n)
  target = (1 + lam) * _grad_p_correct(THETA)
  assert np.all(np.abs(mean - target) <= 4 * se), (mean, target, se)
  k = np.argmax(np.abs(target))
  assert 8 * se[k] < np.abs(target[k]) * (1 - 1 / (1 + lam)), se


# --- NFT ---------------------------------------------------------------------


def test_nft_on_policy_equals_dr_grpo():
  with jax.enable_x64(True):
    g = 4
    correct = np.array([1., 0., 0., 1., 1., 1., 1., 0.])
    logp = -np.abs(_rand(8, 3, seed=13))
    m = np.ones((8, 3))
    m[1, 2] = 0
    nft = lambda x: pgl.nft(x, jax.lax.stop_gradient(x), correct, m,
                            group_size=g)[0].sum()
    g_nft = jax.jit(jax.grad(nft))(logp)
    a = adv.dr_grpo(correct, group_size=g)
    g_dr = jax.jit(jax.grad(lambda x: pgl.pg(x, a, m)[0].sum()))(logp)
    np.testing.assert_allclose(g_nft, g_dr, atol=1e-12)
    # all-correct groups: NFT keeps weight 0.02 (the clip), dr_grpo gives 0.
    ones = np.ones(4)
    g_all = jax.jit(jax.grad(lambda x: pgl.nft(
        x, jax.lax.stop_gradient(x), ones, m[:4], group_size=g)[0].sum()))(
            logp[:4])
    np.testing.assert_allclose(g_all, -0.02 * m[:4], atol=1e-12)


def test_nft_off_policy_against_numpy_and_extremes():
  with jax.enable_x64(True):
    correct = np.array([1., 0., 0., 0.])
    old = -np.abs(_rand(4, 3, seed=14))
    logp = old + _rand(4, 3, seed=15)
    m = np.ones((4, 3))
    got, _ = jax.jit(lambda *a: pgl.nft(*a, group_size=4))(logp, old,
                                                           correct, m)
    rhat, ratio = 0.25, np.exp(np.minimum(logp - old, 10))
    pos = -np.log(np.maximum(ratio, 1e-12))
    neg = -np.log(np.maximum((1 - rhat * ratio) / (1 - rhat), 1e-6))
    want = np.where(correct[:, None] > 0, pos, neg) * (1 - rhat)
    np.testing.assert_allclose(got, want, atol=1e-12)
  huge = jnp.array([[1e4, -1e4], [1e4, -jnp.inf]])
  mask = jnp.array([[1., 1.], [1., 0.]])
  val = pgl.nft(huge, jnp.zeros((2, 2)), jnp.array([1., 0.]), mask,
                group_size=2)[0]
  grad = jax.grad(lambda x: pgl.nft(x, jnp.zeros((2, 2)), jnp.array([1., 0.]),
                                    mask, group_size=2)[0].sum())(huge)
  assert np.all(np.isfinite(val)) and np.all(np.isfinite(grad))


# --- REDI --------------------------------------------------------------------


def test_redi_gradient_weights():
  lw, ll = jnp.array([[-1., -2., -3.]]), jnp.array([[-1., -1., 0.]])
  mw, ml = jnp.ones((1, 3)), jnp.array([[1., 1., 0.]])
  gw, gl = jax.grad(lambda a, b: pgl.redi(a, mw, b, ml).sum(), (0, 1))(lw, ll)
  np.testing.assert_allclose(gw, [[-1 / 3] * 3], rtol=1e-6)
  np.testing.assert_allclose(gl, [[0.4, 0.4, 0.]], rtol=1e-6)
  np.testing.assert_allclose(pgl.redi(lw, mw, ll, ml), [2.0 - 0.8], rtol=1e-6)
  empty = pgl.redi(lw, jnp.zeros((1, 3)), ll, jnp.zeros((1, 3)))
  assert float(empty[0]) == 0.0


# --- Entropy (§5) ------------------------------------------------------------


def test_entropy_uniform_gradient_and_chunks():
  uniform = pgl.entropy(jnp.zeros((2, 3, 8)), jnp.ones((2, 3)))
  np.testing.assert_allclose(uniform, np.log(8.0), rtol=1e-6)
  with jax.enable_x64(True):
    z = _rand(2, 3, 8, seed=16)
    m = np.array([[1., 1., 0.], [1., 0., 0.]])
    logpi = z - np.log(np.exp(z).sum(-1, keepdims=True))
    h = -(np.exp(logpi) * logpi).sum(-1)
    ent = jax.jit(pgl.entropy, static_argnames='chunk_size')
    np.testing.assert_allclose(ent(z, m), h * m, atol=1e-12)
    np.testing.assert_allclose(ent(z, m, chunk_size=2), h * m, atol=1e-12)
    grad = jax.jit(jax.grad(lambda x: pgl.entropy(x, m, chunk_size=4).sum()))(
        z)
    want = -np.exp(logpi) * (logpi + h[..., None]) * m[..., None]
    np.testing.assert_allclose(grad, want, atol=1e-12)
  banned = jnp.array([[[0., -jnp.inf, 0., -jnp.inf]]])
  h = pgl.entropy(banned, jnp.ones((1, 1)), chunk_size=2)
  np.testing.assert_allclose(h, np.log(2.0), rtol=1e-6)
  g = jax.grad(lambda x: pgl.entropy(x, jnp.ones((1, 1))).sum())(banned)
  assert np.all(np.isfinite(g))
  extreme = jnp.array([[[1e4, -1e4, 0., 3.]]], jnp.bfloat16)
  h = pgl.entropy(extreme, jnp.ones((1, 1)), chunk_size=2)
  assert h.dtype == jnp.float32 and np.all(np.isfinite(h))


# --- Generic kernel checks: jit, bf16, fully masked rows ---------------------


def _kernels():
  old = -np.abs(_rand(4, 5, seed=17)).astype(np.float32)
  logp = (old + 0.3 * _rand(4, 5, seed=18)).astype(np.float32)
  a = np.array([1., -1., 0.5, -0.2], np.float32)
  r = np.array([1., 0., 0., 1.], np.float32)
  return logp, {
      'pg': lambda x: pgl.pg(x, a, RAGGED)[0],
      'ppo_clip': lambda x: pgl.ppo_clip(x, old, a, RAGGED)[0],
      'gspo': lambda x: pgl.gspo(x, old, a, RAGGED)[0],
      'topr': lambda x: pgl.topr(x, old, 2 * r - 1, RAGGED)[0],
      'w_reinforce': lambda x: pgl.w_reinforce(x, 2 * r - 1, RAGGED)[0],
      'nft': lambda x: pgl.nft(x, old, r, RAGGED, group_size=2)[0],
      'redi': lambda x: pgl.redi(x, RAGGED, x[::-1], RAGGED[::-1]),
  }


@pytest.mark.parametrize('name', list(pgl.POLICY_LOSSES))
def test_kernel_jit_bf16_and_masked_rows(name):
  logp, kernels = _kernels()
  fn = kernels[name]
  out = fn(logp)
  np.testing.assert_allclose(jax.jit(fn)(logp), out, rtol=1e-5, atol=1e-6)
  low = fn(jnp.asarray(logp, jnp.bfloat16))
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(low, out, rtol=0.05, atol=0.05)
  garbage = np.where(RAGGED > 0, logp, -np.inf).astype(np.float32)
  out_g = fn(garbage)
  grad = jax.grad(lambda x: fn(x).sum())(garbage)
  assert np.all(np.isfinite(out_g)) and np.all(np.isfinite(grad))
  if name != 'redi':
    assert np.all(np.asarray(out_g)[2] == 0)  # fully masked row: zero loss
    assert np.all(np.asarray(grad)[RAGGED == 0] == 0)


# --- Sampler–learner corrections (§6) ----------------------------------------


@pytest.mark.parametrize('name', list(cor.CORRECTIONS))
def test_corrections_identity_when_equal(name):
  lp = -np.abs(_rand(4, 5, seed=19))
  w, diag = cor.CORRECTIONS[name](lp, lp, RAGGED)
  np.testing.assert_allclose(w, RAGGED)
  assert float(np.asarray(diag['flagged']).sum()) == 0
  assert float(cor.effective_sample_size(w, RAGGED)) == pytest.approx(1.0)


def test_truncation_and_masking():
  target = jnp.array([[0.5, 3.0, -1.0], [1.0, 1.0, 0.0]])
  mu = jnp.zeros((2, 3))
  m = jnp.array([[1., 1., 1.], [1., 1., 0.]])
  w, diag = cor.tis_token(target, mu, m, cap=2.0)
  np.testing.assert_allclose(w, [[np.exp(.5), 2., np.exp(-1.)],
                                 [2., 2., 0.]], rtol=1e-6)
  np.testing.assert_allclose(diag['flagged'], [[0, 1, 0], [1, 1, 0]])
  w, _ = cor.tis_seq(target, mu, m, cap=20.0)
  np.testing.assert_allclose(w, [[np.exp(2.5)] * 3, [np.exp(2.), np.exp(2.),
                                                     0.]], rtol=1e-6)
  assert np.all(np.asarray(cor.tis_seq(target, mu, m, cap=10.)[0]) <= 10.)
  w, _ = cor.mis_seq(target, mu, m, cap=10.0)  # Σλ = 2.5 > log 10 > 2
  np.testing.assert_allclose(w, [[0., 0., 0.], [1., 1., 0.]])
  w, _ = cor.mis_seq(-target, mu, m, cap=5.0, lower_bound=True)
  np.testing.assert_allclose(w, 0.0)
  w, _ = cor.mis_seq(-target, mu, m, cap=5.0)
  np.testing.assert_allclose(w, m)
  big = cor.tis_token(jnp.array([[1e4]]), jnp.array([[-1e4]]),
                      jnp.ones((1, 1)))[0]
  assert float(big[0, 0]) == pytest.approx(2.0)


def test_geo_filter_length_invariant():
  lam = np.array([[1e-4, -3e-4, 5e-4, 0.0]])
  m = np.ones((1, 4))
  w1, _ = cor.geo_filter(lam, np.zeros_like(lam), m)
  w10, _ = cor.geo_filter(np.tile(lam, 10), np.zeros((1, 40)),
                          np.ones((1, 40)))
  assert float(w1[0, 0]) == float(w10[0, 0]) == 1.0
  w, _ = cor.geo_filter(np.tile(lam + 2e-3, 10), np.zeros((1, 40)),
                        np.ones((1, 40)))
  assert float(np.asarray(w).sum()) == 0.0


# --- Rewards and transforms (§7) ---------------------------------------------


def test_rlcr_is_proper_scoring_rule():
  q = jnp.linspace(0, 1, 101)
  for p in (0.0, 0.3, 0.8):
    expected = p * rew.rlcr_reward(jnp.ones(101), q, jnp.ones(101, bool)) + (
        1 - p) * rew.rlcr_reward(jnp.zeros(101), q, jnp.ones(101, bool))
    assert float(q[jnp.argmax(expected)]) == pytest.approx(p)
  np.testing.assert_allclose(
      rew.rlcr_reward(jnp.array([1., 0.]), jnp.array([.5, .5]),
                      jnp.array([True, False])), [0.75, -1.0])


def test_unlikeliness_reward():
  g = 4
  r = jnp.array([1., 1., 1., 1., 1., 0., 1., 0.])
  old = jnp.array([[-1.], [-3.], [-2.], [-2.], [-1.], [-2.], [-3.], [-4.]])
  m = jnp.ones((8, 1))
  np.testing.assert_allclose(
      adv.grpo(rew.unlikeliness_reward(r, old, m, group_size=g,
                                       beta_rank=0.0), group_size=g),
      adv.grpo(r, group_size=g))
  got = rew.unlikeliness_reward(r, old, m, group_size=g)
  # group 1 ranks (ties by index): [3, 0, 1, 2]; group 2: [3, 2, 1, 0].
  np.testing.assert_allclose(got[:4], [1 - .25 * 3 / 4, 1., 1 - .25 / 4,
                                       1 - .25 * 2 / 4])
  np.testing.assert_allclose(got[4:], [1 - .25 * 3 / 4, 0., 1 - .25 / 4, 0.])


def test_step_reward_transforms():
  p = jnp.array([[0.9, 0.6, 0.8, 0.0], [0.3, 0.7, 0.0, 0.0]])
  m = jnp.array([[1., 1., 1., 0.], [1., 1., 0., 0.]])
  d = rew.step_reward_delta(p, m)
  np.testing.assert_allclose(d, [[.3, -.2, .8, 0.], [-.4, .7, 0., 0.]],
                             atol=1e-6)
  np.testing.assert_allclose(d.sum(1), p[:, 0], atol=1e-6)
  repeated = jnp.array([[0.9, 0.6, 0.6, 0.8]])
  np.testing.assert_allclose(rew.step_reward_delta(repeated,
                                                   jnp.ones((1, 4))).sum(),
                             0.9, atol=1e-6)
  c = rew.step_reward_clip(p, m, eta=0.5)
  assert np.all(np.asarray(c) <= 0)
  np.testing.assert_allclose(c, [[0., 0., 0., 0.], [-.2, 0., 0., 0.]],
                             atol=1e-6)


def test_log_sigmoid_centring_and_verifier():
  r, ref = jnp.array([-3., 0., 4.]), jnp.array([0., 0., 1.])
  u = rew.log_sigmoid_centring(r, ref)
  assert np.all(np.asarray(u) <= 0)
  np.testing.assert_allclose(u[1], -np.log(2), rtol=1e-6)
  np.testing.assert_allclose(u.sum(), np.log(np.prod(
      jax.nn.sigmoid(r - ref))), rtol=1e-5)
  np.testing.assert_allclose(
      rew.verifier_reward(jnp.array([1, 0, 0]), scale=10.,
                          partial=jnp.array([1, 1, 0]), partial_reward=0.1),
      [10., 0.1, 0.])
