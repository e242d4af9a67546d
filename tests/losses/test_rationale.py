"""Tests for the latent-rationale kernels (spec: rationale.md §0, §1, §7, §8).

The Monte-Carlo tests use the spec's categorical toy: per-example logits over
C rationales of which K are correct, gradients with respect to the logits,
memory drawn from the exact posterior (the chain's stationary state).
Replicates are vmapped, so each test runs in seconds.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from postrain import losses
from postrain.losses import _rationale as rat

M, C, K = 64, 12, 2  # examples, rationales per example, correct ones


def _key(seed):
  # why rbg: XLA:CPU compiles threefry sampling vmapped over thousands of
  # keys about 10x slower; the kernels take keys of any implementation.
  return jax.random.key(seed, impl='rbg')


def _rand(*shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape)


def test_public_names():
  for name in ('weighted_seq_logprob', 'trice_accept', 'trice_weights',
               'trice_subsample', 'systematic_resample', 'mml', 'dco'):
    assert callable(getattr(losses, name)), name
  assert set(losses.MML_LOSSES) == {'mle_aug', 'mml', 'beta_mml'}


# --- §0 the weighted sequence log-prob kernel --------------------------------


def _weighted(logp, weights, mask, signs, normalizer):
  return rat.weighted_seq_logprob(logp, mask, weights, signs=signs,
                                  normalizer=normalizer)


def test_weighted_seq_logprob_gradient_is_exact():
  with jax.enable_x64(True):
    logp, mask = _rand(4, 5), (np.random.default_rng(1).random((4, 5)) > .3)
    w, s = np.abs(_rand(4, seed=2)), np.array([1., -1., 1., -1.])
    for norm, n in ((1.0, np.ones(4)), (3.0, np.full(4, 3.)),
                    ('length', np.maximum(mask.sum(1), 1))):
      fn = functools.partial(_weighted, mask=mask, signs=s, normalizer=norm)
      want = -w * s * (logp * mask).sum(1) / n
      np.testing.assert_allclose(fn(logp, w), want, atol=1e-12)
      g_logp, g_w = jax.grad(lambda lp, w_: fn(lp, w_).sum(), (0, 1))(logp, w)
      np.testing.assert_allclose(g_logp, (-w * s / n)[:, None] * mask,
                                 atol=1e-12)
      assert np.all(np.asarray(g_w) == 0)  # no gradient reaches the weights


def test_weighted_seq_logprob_masked_equals_sliced_and_dtypes():
  logp, w = _rand(3, 6).astype(np.float32), np.array([1., 2., 3.])
  mask = np.ones((3, 6), np.float32)
  mask[:, 4:] = 0
  garbage = logp.copy()
  garbage[:, 4:] = -np.inf  # padding must not leak into value or gradient
  full = rat.weighted_seq_logprob(garbage, mask, w, normalizer='length')
  sliced = rat.weighted_seq_logprob(logp[:, :4], mask[:, :4], w,
                                    normalizer='length')
  np.testing.assert_allclose(full, sliced, rtol=1e-6)
  g = jax.grad(lambda x: rat.weighted_seq_logprob(x, mask, w).sum())(garbage)
  assert np.all(np.isfinite(g))
  out = rat.weighted_seq_logprob(jnp.asarray(logp, jnp.bfloat16), mask, w)
  assert out.dtype == jnp.float32
  empty = rat.weighted_seq_logprob(logp, np.zeros_like(mask), w,
                                   normalizer='length')
  assert np.all(np.asarray(empty) == 0)
  with pytest.raises(ValueError, match='normalizer'):
    rat.weighted_seq_logprob(logp, mask, w, normalizer='tokens')


# --- §1 TRICE ----------------------------------------------------------------


def test_trice_accept_replaces_exactly_where_proposal_correct():
  rng = np.random.default_rng(0)
  mem = dict(tokens=rng.integers(0, 9, (6, 4)), length=rng.integers(1, 4, 6))
  prop = dict(tokens=rng.integers(10, 19, (6, 4)),
              length=rng.integers(4, 8, 6))
  c_mem = np.array([1, 1, 0, 0, 1, 0], bool)
  c_prop = np.array([1, 0, 1, 0, 0, 1], bool)
  new, new_c = jax.jit(rat.trice_accept)(mem, prop, c_mem, c_prop)
  for k in mem:
    want = np.where(c_prop.reshape((6,) + (1,) * (mem[k].ndim - 1)),
                    prop[k], mem[k])
    np.testing.assert_array_equal(new[k], want)
  np.testing.assert_array_equal(new_c, c_prop | c_mem)


def _numpy_beta(c_prop, mask):
  c, v = c_prop * mask, mask
  return np.array([v[m] * (c.sum() - c[m]) / (v.sum() - 1 + 1e-10)
                   for m in range(len(c))])


def test_trice_linear_toy_gradient_matches_closed_form():
  """Spec §1.10 test 2 on `logπ = θ·φ(z)`, to 1e-10."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    m, d = 9, 5
    phi_mem, phi_prop = rng.normal(size=(m, d)), rng.normal(size=(m, d))
    c_mem, c_prop = rng.random(m) > .5, rng.random(m) > .4
    theta = rng.normal(size=d)
    (phi_new,), mask = rat.trice_accept((phi_mem,), (phi_prop,), c_mem,
                                        c_prop)
    tw = rat.trice_weights(c_prop, mask)
    cand = jnp.concatenate([phi_new, phi_prop])

    def loss(th):
      logp = (cand @ th)[:, None]
      return rat.weighted_seq_logprob(
          logp, jnp.ones_like(logp), tw['weights'], signs=tw['signs'],
          normalizer=tw['normalizer']).sum()

    v, c = np.asarray(mask, float), c_prop.astype(float)
    beta = _numpy_beta(c, v)
    phi_prime = np.where(c_prop[:, None], phi_prop, phi_mem)
    want = -(v[:, None] * ((1 - beta * c)[:, None] * phi_prime
                           - (beta * (1 - c))[:, None] * phi_prop)
             ).sum(0) / v.sum()
    np.testing.assert_allclose(jax.grad(loss)(theta), want, atol=1e-10)
    np.testing.assert_allclose(tw['beta'], beta, atol=1e-12)
    assert float(tw['n_valid']) == v.sum()


def test_trice_beta_is_leave_one_out():
  """β_m does not change when c̃_m flips (mask fixed: memory correct)."""
  rng = np.random.default_rng(4)
  c_prop = (rng.random(10) > .5).astype(float)
  mask = np.ones(10)
  beta = rat.trice_weights(c_prop, mask)['beta']
  for m in range(10):
    flipped = c_prop.copy()
    flipped[m] = 1 - flipped[m]
    np.testing.assert_allclose(rat.trice_weights(flipped, mask)['beta'][m],
                               beta[m], rtol=1e-6)
  no_cv = rat.trice_weights(c_prop, mask, control_variate=False)
  np.testing.assert_array_equal(no_cv['weights'],
                                np.concatenate([mask, np.zeros(10)]))


# The categorical toy of spec §1.6.


def _toy_logits(scale, seed=0):
  b = np.random.default_rng(seed).normal(0, .5, size=(M, C))
  correct = np.zeros((M, C), bool)
  correct[:, :K] = True
  return b + scale * correct, correct


def _accuracy(scale, seed=0):
  logits, correct = _toy_logits(scale, seed)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return (p * correct).sum(1).mean()


def _scale_for_accuracy(target, seed=0):
  lo, hi = -5.0, 15.0
  for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if _accuracy(mid, seed) < target else (lo, mid)
  return (lo + hi) / 2


def _exact_gradient(logits, correct):
  """∇_logits (1/M) Σ_m log Σ_{z correct} p(z) = (posterior − p)/M."""
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  post = p * correct / (p * correct).sum(1, keepdims=True)
  return (post - p) / len(logits)


def _toy_estimate(key, logits, correct, estimator, num_samples=M):
  """One TRICE gradient estimate of ∇ (1/M) Σ log p(y_m|x_m), [M, C]."""
  k_mem, k_prop, k_sub = jax.random.split(key, 3)
  rows = jnp.arange(M)
  post_logits = jnp.where(correct, logits, -jnp.inf)
  z_mem = jax.random.categorical(k_mem, post_logits)
  z_prop = jax.random.categorical(k_prop, logits)
  c_prop = correct[rows, z_prop]
  z_new, mask = rat.trice_accept(z_mem, z_prop, jnp.ones(M, bool), c_prop)
  tw = rat.trice_weights(c_prop, mask,
                         control_variate=estimator != 'basic')
  ex, cand = jnp.concatenate([rows, rows]), jnp.concatenate([z_new, z_prop])
  w, s, norm = tw['weights'], tw['signs'], tw['normalizer']
  if estimator == 'subsampled':
    sub = rat.trice_subsample(k_sub, w, s, tw['n_valid'],
                              num_samples=num_samples)
    ex, cand = ex[sub['indices']], cand[sub['indices']]
    w, s, norm = sub['weights'], sub['signs'], sub['normalizer']

  def loss(lg):
    logp = jax.nn.log_softmax(lg)[ex, cand][:, None]
    return rat.weighted_seq_logprob(logp, jnp.ones_like(logp), w, signs=s,
                                    normalizer=norm).sum()

  return -jax.grad(loss)(logits)


@functools.partial(jax.jit, static_argnames=('estimator', 'reps'))
def _replicates_jit(key, logits, correct, estimator, reps):
  keys = jax.random.split(key, reps)
  return jax.vmap(_toy_estimate, (0, None, None, None))(
      keys, logits, correct, estimator)


def _replicates(logits, correct, estimator, reps, seed=0):
  return np.asarray(_replicates_jit(_key(seed), logits, correct,
                                    estimator, reps))


def _assert_unbiased(est, exact, what):
  """Mean of `est` [R, M, C] equals `exact` within 4.5 standard errors.

  Tested along 32 random directions and along the exact gradient, where the
  central limit theorem holds: single entries are rare indicators (a wrong
  rationale proposed with probability 1e-4), whose empirical standard error
  is unreliable. A wrong scale (1/M vs 1/|V|) or a biased weight gives
  |z| ≫ 10 here.
  """
  dirs = np.random.default_rng(0).normal(size=(33,) + exact.shape)
  dirs[0] = exact / np.linalg.norm(exact)
  proj = np.einsum('rmc,dmc->rd', est, dirs)
  z = ((proj.mean(0) - np.einsum('mc,dmc->d', exact, dirs))
       / (proj.std(0, ddof=1) / np.sqrt(len(est))))
  assert np.abs(z).max() < 4.5, (what, z)
  assert np.mean(z**2) < 2.0, (what, z)


@pytest.mark.parametrize('scale', [0.0, 2.0, 6.0])
@pytest.mark.parametrize('estimator', ['basic', 'cv', 'subsampled'])
def test_trice_estimators_are_unbiased(scale, estimator):
  with jax.enable_x64(True):
    logits, correct = _toy_logits(scale)
    est = _replicates(logits, correct, estimator, reps=2000,
                      seed=int(scale))
    _assert_unbiased(est, _exact_gradient(logits, correct), estimator)


# Spec §1.6 table: acceptance -> (var basic, var CV, var subsampled CV) ×M².
_TABLE = {
    0.164: (29.43, 29.53, 44.51),
    0.342: (29.41, 29.35, 47.92),
    0.578: (29.39, 26.93, 37.87),
    0.784: (29.47, 19.37, 22.62),
    0.907: (29.37, 10.26, 10.91),
    0.986: (29.32, 1.75, 1.78),
    0.998: (29.41, 0.244, 0.246),
}


def test_trice_variance_table_and_cv_vanishes():
  """Spec §1.10 test 4: the §1.6 table within 10% at matching acceptance."""
  measured = {}
  with jax.enable_x64(True):
    for acc, want in _TABLE.items():
      logits, correct = _toy_logits(_scale_for_accuracy(acc))
      got = []
      for estimator in ('basic', 'cv', 'subsampled'):
        est = _replicates(logits, correct, estimator, reps=3000)
        got.append(float(rat.gradient_variance(est)) * M**2)
      measured[acc] = got
      np.testing.assert_allclose(got, want, rtol=0.10, err_msg=str(acc))
  basic = [v[0] for v in measured.values()]
  cv = [v[1] for v in measured.values()]
  assert max(basic) / min(basic) < 1.1  # the basic estimator's does not fall
  assert cv[-1] < 0.02 * basic[-1]  # the CV's falls toward zero
  assert all(a > b for a, b in zip(cv[2:], cv[3:]))


def test_subsampled_average_over_keys_is_full_cv_gradient():
  """Spec §1.10 test 5: fixed batch, many resampling keys."""
  with jax.enable_x64(True):
    logits, correct = _toy_logits(1.0)
    rng = np.random.default_rng(0)
    z_mem = np.argmax(correct * rng.random((M, C)), 1)  # a correct memory
    z_prop = rng.integers(0, C, M)
    c_prop = correct[np.arange(M), z_prop]
    z_new, mask = rat.trice_accept(z_mem, z_prop, np.ones(M, bool), c_prop)
    tw = rat.trice_weights(c_prop, mask)
    ex = jnp.concatenate([jnp.arange(M)] * 2)
    cand = jnp.concatenate([z_new, jnp.asarray(z_prop)])

    def grad(idx, w, s, norm):
      def loss(lg):
        logp = jax.nn.log_softmax(lg)[ex[idx], cand[idx]][:, None]
        return rat.weighted_seq_logprob(logp, jnp.ones_like(logp), w,
                                        signs=s, normalizer=norm).sum()
      return jax.grad(loss)(logits)

    full = grad(np.arange(2 * M), tw['weights'], tw['signs'],
                tw['normalizer'])

    def one(key):
      sub = rat.trice_subsample(key, tw['weights'], tw['signs'],
                                tw['n_valid'], num_samples=16)
      return grad(sub['indices'], sub['weights'], sub['signs'],
                  sub['normalizer'])

    keys = jax.random.split(_key(1), 20000)
    est = np.asarray(jax.jit(jax.vmap(one))(keys))
    _assert_unbiased(est, np.asarray(full), 'subsampled | batch')


@functools.partial(jax.jit, static_argnums=2)
def _draws(keys, w, num):
  return jax.vmap(lambda k: rat.systematic_resample(k, w, num))(keys)


@pytest.mark.parametrize('seed', range(5))
def test_systematic_resample_counts(seed):
  rng = np.random.default_rng(seed)
  w = rng.random(2 * M) * (rng.random(2 * M) > .3)
  for num in (1, 7, 64):
    keys = jax.random.split(_key(seed), 50)
    idx = _draws(keys, w, num)
    assert idx.shape == (50, num) and idx.dtype == jnp.int32
    counts = np.stack([np.bincount(i, minlength=2 * M) for i in idx])
    lp = num * w / w.sum()
    assert np.all((counts >= np.floor(lp)) & (counts <= np.ceil(lp))), num
    assert np.all(counts[:, w == 0] == 0)


def test_trice_subsample_static_shape_and_all_masked_batch():
  f = jax.jit(lambda k, w, s, n: rat.trice_subsample(k, w, s, n,
                                                     num_samples=8))
  key = jax.random.key(0)
  for valid in (0, 1, 5):
    mask = (np.arange(6) < valid).astype(float)
    tw = rat.trice_weights(np.zeros(6), mask)
    sub = f(key, tw['weights'], tw['signs'], tw['n_valid'])
    assert sub['indices'].shape == (8,)
    assert float(tw['n_valid']) == valid
  # all masked: finite, near-zero gradient
  tw = rat.trice_weights(np.zeros(6), np.zeros(6))
  sub = f(key, tw['weights'], tw['signs'], tw['n_valid'])
  logp = jnp.asarray(_rand(12, 3), jnp.float32)

  def loss(lp):
    i = sub['indices']
    return rat.weighted_seq_logprob(lp[i], jnp.ones((8, 3)), sub['weights'],
                                    signs=sub['signs'],
                                    normalizer=sub['normalizer']).sum()

  g = jax.grad(loss)(logp)
  assert np.all(np.isfinite(g)) and np.abs(g).max() < 1e-8


def test_trice_memory_chain_is_stationary_at_posterior():
  """Spec §1.10 test 7: θ fixed, chi-square against p_θ(z | x, y)."""
  rng = np.random.default_rng(5)
  logits = rng.normal(size=C)
  correct = np.zeros(C, bool)
  correct[[1, 4, 7]] = True
  logits[correct] += 1.0  # p(correct) ≈ 0.5: every chain mixes in 40 steps
  post = np.exp(logits) * correct / (np.exp(logits) * correct).sum()
  chains, steps = 20000, 40

  def run(key):
    def step(state, k):
      z, c = state
      prop = jax.random.categorical(k, logits)
      c_prop = jnp.asarray(correct)[prop][None]
      return rat.trice_accept(z, prop[None], c, c_prop), None
    start = (jnp.zeros(1, jnp.int32), jnp.zeros(1, bool))  # wrong, unhinted
    (z, c), _ = jax.lax.scan(step, start, jax.random.split(key, steps))
    return z[0], c[0]

  z, c = jax.jit(jax.vmap(run))(jax.random.split(_key(2), chains))
  assert np.all(np.asarray(c))  # every chain has reached a correct state
  counts = np.bincount(np.asarray(z), minlength=C)[correct]
  stat, pval = stats.chisquare(counts, chains * post[correct])
  assert pval > 1e-3, (stat, pval)


# --- §7 MML and β-MML over a buffer ------------------------------------------


def _buffer(seed=0, b=3, j=4, t=5):
  rng = np.random.default_rng(seed)
  logp = -np.abs(rng.normal(size=(b, j, t)))
  mask = (rng.random((b, j, t)) > .3).astype(float)
  mask[0, 2:] = 0  # two invalid slots
  mask[2] = 0  # a row without any valid slot
  return logp, mask


def _np_beta_mml(logp, mask, beta):
  seq, valid = (logp * mask).sum(-1), mask.sum(-1) > 0
  out = np.zeros(len(seq))
  for i in range(len(seq)):
    if valid[i].any():
      x = beta * seq[i][valid[i]]
      out[i] = -(x.max() + np.log(np.exp(x - x.max()).sum())) / beta
  return out


@pytest.mark.parametrize('beta', [0.1, 0.25, 0.5, 1.0, 3.0])
def test_beta_mml_matches_float64_reference(beta):
  with jax.enable_x64(True):
    logp, mask = _buffer()
    np.testing.assert_allclose(rat.beta_mml(logp, mask, beta=beta),
                               _np_beta_mml(logp, mask, beta), atol=1e-12)
    # gradient = −Σ softmax(β logπ) ∇logπ: the weighted kernel reproduces it
    g = jax.grad(lambda x: rat.beta_mml(x, mask, beta=beta).sum())(logp)
    w = rat.beta_mml_weights(logp, mask, beta=beta)
    g_w = jax.grad(lambda x: rat.weighted_seq_logprob(
        x.reshape(-1, 5), mask.reshape(-1, 5), w.reshape(-1)).sum())(logp)
    np.testing.assert_allclose(g, g_w, atol=1e-12)
    assert np.all(np.isfinite(g)) and np.all(g[2] == 0)


def test_mml_properties():
  with jax.enable_x64(True):
    logp, mask = _buffer(1)
    seq = (logp * mask).sum(-1)
    # a one-slot buffer is NLL
    np.testing.assert_allclose(rat.mml(logp[:, :1], mask[:, :1]),
                               np.where(mask[:, 0].sum(-1) > 0, -seq[:, 0],
                                        0), atol=1e-12)
    # invalid slots change nothing, whatever they hold
    junk = logp.copy()
    junk[0, 2:] = np.nan
    for fn in rat.MML_LOSSES.values():
      np.testing.assert_allclose(fn(junk, mask), fn(logp, mask), atol=1e-12)
      np.testing.assert_allclose(fn(logp[:1, :2], mask[:1, :2]),
                                 fn(logp, mask)[:1], atol=1e-12)
    # β = 1 weights are the posterior over the buffer; β → 0 uniform
    w1 = rat.beta_mml_weights(logp, mask, beta=1.0)
    p = np.exp(seq) * (mask.sum(-1) > 0)
    np.testing.assert_allclose(w1[:2], p[:2] / p[:2].sum(-1, keepdims=True),
                               atol=1e-12)
    w0 = rat.beta_mml_weights(logp, mask, beta=1e-6)
    valid = mask.sum(-1) > 0
    np.testing.assert_allclose(
        w0[:2], valid[:2] / valid[:2].sum(-1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(
        rat.mle_aug(logp, mask),
        -np.where(valid, seq, 0).sum(-1) / np.maximum(valid.sum(-1), 1),
        atol=1e-12)
    np.testing.assert_allclose(rat.mle_aug(logp, mask, mean=False),
                               -np.where(valid, seq, 0).sum(-1), atol=1e-12)


def test_mml_over_correct_arms_is_trice_objective():
  with jax.enable_x64(True):
    logits, correct = _toy_logits(1.5)
    logp = jax.nn.log_softmax(logits)
    # buffer: every rationale, invalid where wrong -> −log p(y|x)
    buf = np.asarray(logp)[:, :, None]
    p_correct = (np.exp(logp) * correct).sum(1)
    np.testing.assert_allclose(rat.mml(buf, correct[:, :, None]),
                               -np.log(p_correct), atol=1e-12)
    g = jax.grad(lambda lg: rat.mml(jax.nn.log_softmax(lg)[:, :, None],
                                    correct[:, :, None]).mean())(logits)
    np.testing.assert_allclose(-g, _exact_gradient(logits, correct),
                               atol=1e-12)


# --- §8 DCO ------------------------------------------------------------------


def _dco_sum(logp, mask, n):
  return rat.dco(logp, mask, n=n).sum()


def _dco_weighted_sum(logp, mask, n):
  w = rat.dco_weights(logp, mask, n=n)
  return rat.weighted_seq_logprob(logp, mask, w).sum()


def test_dco_values_gradient_and_ce_limit():
  with jax.enable_x64(True):
    lp_seq = np.array([-1e-4, -0.05, -0.7, -2.0, -6.0, -20.0])
    logp = np.stack([lp_seq / 2, lp_seq / 2], 1)  # two tokens each
    mask = np.ones_like(logp)
    p = np.exp(lp_seq)
    for n in (1, 4, 16):
      want = -np.log(-np.expm1(n * np.log1p(-p)))
      np.testing.assert_allclose(rat.dco(logp, mask, n=n), want, rtol=1e-9,
                                 atol=1e-15)
      g = jax.grad(_dco_sum)(logp, mask, n)
      f = n * p * (1 - p)**(n - 1) / (1 - (1 - p)**n)
      np.testing.assert_allclose(g, -f[:, None] * mask, rtol=1e-7)
      np.testing.assert_allclose(rat.dco_weights(logp, mask, n=n), f,
                                 rtol=1e-7)
      # the weighted kernel with F_N reproduces the DCO gradient
      g_w = jax.grad(_dco_weighted_sum)(logp, mask, n)
      np.testing.assert_allclose(g_w, g, rtol=1e-7)
    np.testing.assert_allclose(rat.dco(logp, mask, n=1), -lp_seq, rtol=1e-9)
    f = np.asarray(rat.dco_weights(logp, mask, n=16))
    assert np.all(np.diff(f[::-1]) < 0)  # F_N decreases in p


def test_dco_finite_at_extremes_and_empty_rows():
  for dtype in (jnp.float32, jnp.bfloat16):
    logp = jnp.array([[-1e-9], [-50.], [-1000.], [0.]], dtype)
    mask = jnp.array([[1.], [1.], [1.], [0.]])
    for n in (1, 16):
      loss = rat.dco(logp, mask, n=n)
      g = jax.grad(_dco_sum)(logp, mask, n)
      f = rat.dco_weights(logp, mask, n=n)
      assert loss.dtype == jnp.float32
      assert np.all(np.isfinite(loss)) and np.all(np.isfinite(g))
      assert float(loss[3]) == 0 and float(g[3, 0]) == 0 and float(f[3]) == 0
      np.testing.assert_allclose(loss[1:3], [50 - np.log(n), 1000 - np.log(n)],
                                 rtol=1e-5)
      np.testing.assert_allclose(f[1:3], [1, 1], rtol=1e-5)
  with pytest.raises(ValueError, match='n must be'):
    rat.dco(logp, mask, n=0)


def test_jit_equals_eager():
  logp, mask = _buffer(2)
  logp, mask = logp.astype(np.float32), mask.astype(np.float32)
  for fn in (rat.mml, rat.beta_mml, rat.mle_aug):
    np.testing.assert_allclose(jax.jit(fn)(logp, mask), fn(logp, mask),
                               rtol=1e-6)
  np.testing.assert_allclose(jax.jit(rat.dco)(logp[:, 0], mask[:, 0]),
                             rat.dco(logp[:, 0], mask[:, 0]), rtol=1e-6)
