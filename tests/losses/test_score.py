"""Score kernels against closed forms and float64 numpy (specs/score.md §1-4)."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain import losses
from postrain.losses import _score as sc


def _rand(*shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape)


def test_registry_names():
  assert set(losses.PROCESSES) == {'ve', 'vp', 'ou', 'edm'}
  assert set(losses.PARAMETRIZATIONS) == {'eps', 'x0', 'score', 'v'}
  assert set(losses.WEIGHTINGS) == {'unit', 'snr_inv', 'v', 'min_snr',
                                    'likelihood', 'edm'}


# --- §1 processes ------------------------------------------------------------


@pytest.mark.parametrize('name', ['vp', 'ou'])
def test_variance_preserving(name):
  with jax.enable_x64(True):
    m = sc.PROCESSES[name](np.linspace(1e-5, 1, 50))
    np.testing.assert_allclose(m.alpha**2 + m.sigma**2, 1, atol=1e-14)


def test_vp_alpha_matches_integrated_beta():
  with jax.enable_x64(True):
    t = np.linspace(0, 1, 20001)
    beta = 0.1 + t * (20 - 0.1)
    integral = np.concatenate([[0], np.cumsum((beta[1:] + beta[:-1]) / 2)
                               * (t[1] - t[0])])
    np.testing.assert_allclose(sc.vp(t).alpha, np.exp(-0.5 * integral),
                               rtol=1e-7)


@pytest.mark.parametrize('name', ['ve', 'vp', 'ou', 'edm'])
def test_sde_coefficients_match_marginals(name):
  # f = d log α/dt and g² = dσ²/dt − 2f·σ² for a linear SDE.
  with jax.enable_x64(True):
    proc = sc.PROCESSES[name]
    for t in (0.05, 0.3, 0.9):
      t = jnp.float64(t)
      f = jax.grad(lambda u: jnp.log(proc(u).alpha))(t)
      ds2 = jax.grad(lambda u: proc(u).sigma**2)(t)
      m = proc(t)
      np.testing.assert_allclose(m.drift, f, rtol=1e-12, atol=1e-14)
      np.testing.assert_allclose(m.diffusion2, ds2 - 2 * f * m.sigma**2,
                                 rtol=1e-10)


def test_edm_schedule_endpoints():
  with jax.enable_x64(True):
    s = sc.edm_sigmas(18)
    assert s.shape == (19,)
    np.testing.assert_allclose([s[0], s[17], s[18]], [80, 0.002, 0],
                               rtol=1e-12)
    assert np.all(np.diff(s) < 0)


# --- §2 DSM -------------------------------------------------------------------


def _setup(seed=0, b=6, d=3):
  with jax.enable_x64(True):
    t = np.random.default_rng(seed).uniform(0.05, 0.95, b)
    m = sc.vp(t)
  x0, eps = _rand(b, d, seed=seed), _rand(b, d, seed=seed + 1)
  a, s = np.asarray(m.alpha)[:, None], np.asarray(m.sigma)[:, None]
  return x0, eps, a[:, 0], s[:, 0], a * x0 + s * eps


def test_conversions_round_trip():
  with jax.enable_x64(True):
    _, _, a, s, x_t = _setup()
    pred = _rand(*x_t.shape, seed=5)
    for src, dst in itertools.permutations(sc.PARAMETRIZATIONS, 2):
      there = sc.convert(pred, x_t, a, s, src, dst)
      back = sc.convert(there, x_t, a, s, dst, src)
      np.testing.assert_allclose(back, pred, atol=1e-12, err_msg=(src, dst))


def test_conversion_table_float64():
  with jax.enable_x64(True):
    _, _, a, s, x_t = _setup()
    e = _rand(*x_t.shape, seed=7)
    a_, s_ = a[:, None], s[:, None]
    want = {'score': -e / s_, 'x0': (x_t - s_ * e) / a_,
            'v': (e - s_ * x_t) / a_}
    for dst, ref in want.items():
      np.testing.assert_allclose(sc.convert(e, x_t, a, s, 'eps', dst), ref,
                                 atol=1e-12, err_msg=dst)
    v = want['v']
    np.testing.assert_allclose(sc.convert(v, x_t, a, s, 'v', 'x0'),
                               a_ * x_t - s_ * v, atol=1e-12)
    for name, fn in sc.PARAMETRIZATIONS.items():
      np.testing.assert_allclose(
          fn(sc.convert(e, x_t, a, s, 'eps', name), x_t, a, s), -e / s_,
          atol=1e-11, err_msg=name)


def test_dsm_equivalences_per_sample():
  # One prediction, seen in four parametrisations, gives one loss; and
  # ‖ŝ − target‖² = ‖ε̂ − ε‖²/σ², ε̂ − ε = α(v̂ − v), x̂0 − x0 = −σ(v̂ − v).
  with jax.enable_x64(True):
    x0, eps, a, s, x_t = _setup()
    e_hat = eps + 0.3 * _rand(*eps.shape, seed=9)
    eps_mse = ((e_hat - eps) ** 2).sum(-1)
    for name in sc.PARAMETRIZATIONS:
      pred = sc.convert(e_hat, x_t, a, s, 'eps', name)
      np.testing.assert_allclose(sc.dsm_loss(pred, x0, eps, a, s,
                                             parametrization=name),
                                 eps_mse, rtol=1e-10, err_msg=name)
    s_hat = sc.convert(e_hat, x_t, a, s, 'eps', 'score')
    np.testing.assert_allclose(((s_hat + eps / s[:, None]) ** 2).sum(-1),
                               eps_mse / s**2, rtol=1e-10)
    v_hat = sc.convert(e_hat, x_t, a, s, 'eps', 'v')
    v = a[:, None] * eps - s[:, None] * x0
    np.testing.assert_allclose(e_hat - eps, a[:, None] * (v_hat - v),
                               atol=1e-12)
    np.testing.assert_allclose(sc.convert(e_hat, x_t, a, s, 'eps', 'x0') - x0,
                               -s[:, None] * (v_hat - v), atol=1e-12)


def test_weightings_float64():
  with jax.enable_x64(True):
    x0, eps, a, s, x_t = _setup()
    e_hat = eps + _rand(*eps.shape, seed=3)
    mse = ((e_hat - eps) ** 2).sum(-1)
    snr = a**2 / s**2
    g2 = np.full_like(s, 3.0)
    ref = {'unit': mse, 'snr_inv': mse / snr, 'v': mse * (1 + 1 / snr),
           'min_snr': mse * np.minimum(snr, 5.0) / snr,
           'likelihood': mse * g2 / s**2,
           'edm': mse * ((s / a) ** 2 + 0.25) / 0.25}
    for w, want in ref.items():
      got = sc.dsm_loss(e_hat, x0, eps, a, s, weighting=w, g2=g2)
      np.testing.assert_allclose(got, want, rtol=1e-10, err_msg=w)
    # snr_inv is the plain x0-MSE, v the plain v-MSE.
    x0_hat = sc.convert(e_hat, x_t, a, s, 'eps', 'x0')
    np.testing.assert_allclose(ref['snr_inv'], ((x0_hat - x0) ** 2).sum(-1),
                               rtol=1e-10)
    v_hat = sc.convert(e_hat, x_t, a, s, 'eps', 'v')
    v = a[:, None] * eps - s[:, None] * x0
    np.testing.assert_allclose(ref['v'], ((v_hat - v) ** 2).sum(-1),
                               rtol=1e-10)


def test_bad_names_and_missing_g2_are_clear_errors():
  x0, eps, a, s, _ = _setup()
  with pytest.raises(ValueError, match="parametrization='eps2'"):
    sc.dsm_loss(eps, x0, eps, a, s, parametrization='eps2')
  with pytest.raises(ValueError, match="weighting='snr'.*min_snr"):
    sc.dsm_loss(eps, x0, eps, a, s, weighting='snr')
  with pytest.raises(ValueError, match='needs g2'):
    sc.dsm_loss(eps, x0, eps, a, s, weighting='likelihood')


def _gaussian(d=3, seed=0):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(d, d))
  return rng.normal(size=d), w @ w.T / d + 0.1 * np.eye(d)


def test_dsm_minimiser_is_the_analytic_score_on_gaussian_data():
  # Least squares ε̂ = K x_t + b on many samples gives K* = σ(α²Σ + σ²I)^{-1},
  # b* = −K*αμ; and the analytic ε* beats a·ε* for a ≠ 1.
  mu, cov = _gaussian()
  n, d, a, s = 400_000, 3, 0.8, 0.6
  rng = np.random.default_rng(1)
  x0 = rng.multivariate_normal(mu, cov, size=n)
  eps = rng.normal(size=(n, d))
  x_t = a * x0 + s * eps
  feats = np.concatenate([x_t, np.ones((n, 1))], 1)
  coef = np.linalg.lstsq(feats, eps, rcond=None)[0]
  k_star = s * np.linalg.inv(a**2 * cov + s**2 * np.eye(d))
  np.testing.assert_allclose(coef[:d].T, k_star, atol=1e-2)
  np.testing.assert_allclose(coef[d], -k_star @ (a * mu), atol=1e-2)
  with jax.enable_x64(True):
    e_star = (x_t - a * mu) @ k_star.T
    av, sv = np.full(n, a), np.full(n, s)
    best = np.mean(sc.dsm_loss(e_star, x0, eps, av, sv))
    for scale in (0.9, 1.1):
      assert np.mean(sc.dsm_loss(scale * e_star, x0, eps, av, sv)) > best


def test_sigma_bucket_means():
  with jax.enable_x64(True):
    sigma = np.array([0.01, 0.011, 2.0, 90.0, 100.0])
    vals = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    means, counts = sc.sigma_bucket_means(vals, sigma, sigma_min=0.01,
                                          sigma_max=100.0, num=4)
    np.testing.assert_array_equal(counts, [2, 0, 1, 2])
    np.testing.assert_allclose(means, [2, 0, 5, 8])


def test_dsm_dtype_jit_and_grads():
  x0, eps, a, s, _ = _setup()
  bf = jnp.asarray(eps, jnp.bfloat16)
  out = sc.dsm_loss(bf, x0, eps, a, s, weighting='min_snr')
  assert out.dtype == jnp.float32
  fn = functools.partial(sc.dsm_loss, parametrization='v', weighting='edm')
  np.testing.assert_allclose(jax.jit(fn)(eps, x0, eps, a, s),
                             fn(eps, x0, eps, a, s), rtol=1e-6)
  g = jax.grad(lambda p: fn(p, x0, eps, a, s).sum())(jnp.asarray(eps))
  assert np.all(np.isfinite(g))


# --- §3 EDM preconditioning -------------------------------------------------


def test_edm_preconditioning_identities():
  with jax.enable_x64(True):
    sigma = np.geomspace(1e-3, 80, 30)
    c = sc.edm_precond(sigma, sigma_data=0.5)
    np.testing.assert_allclose(
        sc.edm_loss_weight(sigma) * c['c_out'] ** 2, 1, rtol=1e-12)
    tiny = sc.edm_precond(np.array([1e-8]))
    np.testing.assert_allclose([tiny['c_skip'][0], tiny['c_out'][0]], [1, 0],
                               atol=1e-7)
    np.testing.assert_allclose(c['c_noise'], np.log(sigma) / 4)
  rng = np.random.default_rng(0)
  x0 = 0.5 * rng.normal(size=200_000)
  for sig in (0.1, 2.0, 30.0):
    x = x0 + sig * rng.normal(size=x0.shape)
    c_in = float(sc.edm_precond(np.float32(sig))['c_in'])
    assert abs(np.var(c_in * x) - 1) < 0.02


def test_edm_loss_is_weighted_denoiser_mse():
  with jax.enable_x64(True):
    x0, eps = _rand(5, 4), _rand(5, 4, seed=1)
    sigma = np.geomspace(0.01, 50, 5)
    x = x0 + sigma[:, None] * eps
    f = _rand(5, 4, seed=2)
    c = sc.edm_precond(sigma, sigma_data=0.7)
    den = c['c_skip'][:, None] * x + c['c_out'][:, None] * f
    want = sc.edm_loss_weight(sigma, sigma_data=0.7) * ((den - x0) ** 2).sum(1)
    np.testing.assert_allclose(sc.edm_loss(f, x0, x, sigma, sigma_data=0.7),
                               want, rtol=1e-10)
    ones = np.ones(5)
    np.testing.assert_allclose(
        sc.dsm_loss(den, x0, eps, ones, sigma, parametrization='x0',
                    weighting='edm', sigma_data=0.7), want, rtol=1e-10)


# --- §4 sliced score matching ---------------------------------------------


def test_ssm_linear_score_trace_and_unbiased_objective():
  # s(x) = −A x with data N(0, Σ): E[vᵀJv] = −tr(A), and the SSM-VR mean is
  # unbiased for −tr(A) + ½tr(AᵀAΣ), whose gradient vanishes at A = Σ^{-1}.
  with jax.enable_x64(True):
    d, n = 3, 200_000
    _, cov = _gaussian(d)
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal(np.zeros(d), cov, size=n)
    v = rng.normal(size=(n, d))

    def objective(a, vr):
      s, jv = jax.jvp(lambda z: -z @ a.T, (x,), (v,))
      loss, terms = sc.sliced_score_matching(s, jv, v, variance_reduction=vr)
      return loss.mean(), terms

    a = np.linalg.inv(cov)
    exact = -np.trace(a) + 0.5 * np.trace(a.T @ a @ cov)
    for vr in (False, True):
      val, terms = objective(a, vr)
      se = np.std(terms['trace'] + terms['norm']) / np.sqrt(n)
      assert abs(val - exact) < 4 * se, (vr, val, exact)
      assert abs(terms['trace'].mean() + np.trace(a)) < 4 * np.std(
          terms['trace']) / np.sqrt(n)
    grad = jax.grad(lambda a: objective(a, True)[0])(a)
    assert np.abs(grad).max() < 0.05
    far = jax.grad(lambda a: objective(a, True)[0])(2 * a)
    assert np.abs(far).max() > 0.5
