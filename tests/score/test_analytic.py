"""Analytic scores, the Gaussian PF-ODE and teleport (specs/score.md §6-7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain import losses
from postrain import score


def _gauss(d=3, seed=0, rank=None):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(d, rank or d))
  return rng.normal(size=d), w @ w.T / d + (0 if rank else 0.1) * np.eye(d)


def _x(b=7, d=3, seed=1):
  return np.random.default_rng(seed).normal(size=(b, d)) * 2


def _grad_of(log_density, x, sigma):
  return jax.vmap(jax.grad(lambda xi, si: log_density(xi[None], si)[0]))(
      x, sigma)


def test_scores_equal_autodiff_of_log_densities():
  with jax.enable_x64(True):
    x = _x()
    sigma = np.geomspace(0.05, 5, 7)
    mu, cov = _gauss()
    gmm = dict(weights=np.array([0.2, 0.5, 0.3]),
               means=np.random.default_rng(2).normal(size=(3, 3)),
               covs=np.stack([_gauss(seed=s)[1] for s in (3, 4, 5)]))
    pts = np.random.default_rng(6).normal(size=(11, 3))
    cases = [
        (lambda a, s: score.gaussian_log_density(a, s, mu, cov),
         score.gaussian_score(x, sigma, mu, cov)),
        (lambda a, s: score.gmm_log_density(a, s, **gmm),
         score.gmm_score(x, sigma, **gmm)),
        (lambda a, s: score.delta_mixture_log_density(a, s, pts),
         score.delta_mixture_score(x, sigma, pts)),
    ]
    for i, (logp, s) in enumerate(cases):
      np.testing.assert_allclose(s, _grad_of(logp, x, sigma), rtol=1e-10,
                                 atol=1e-10, err_msg=str(i))


def test_log_densities_against_numpy():
  with jax.enable_x64(True):
    x, mu, cov, sig = _x(), *_gauss(), 0.7
    c = cov + sig**2 * np.eye(3)
    r = x - mu
    want = -0.5 * (np.einsum('bi,ij,bj->b', r, np.linalg.inv(c), r)
                   + np.log(np.linalg.det(2 * np.pi * c)))
    np.testing.assert_allclose(score.gaussian_log_density(x, sig, mu, cov),
                               want, rtol=1e-12)


def test_special_cases_agree():
  with jax.enable_x64(True):
    x, (mu, cov), sig = _x(), _gauss(), np.geomspace(0.1, 3, 7)
    # One-point delta mixture = zero-covariance Gaussian.
    np.testing.assert_allclose(
        score.delta_mixture_score(x, sig, mu[None]),
        score.gaussian_score(x, sig, mu, np.zeros((3, 3))), atol=1e-12)
    # One-component GMM = Gaussian.
    np.testing.assert_allclose(
        score.gmm_score(x, sig, np.ones(1), mu[None], cov[None]),
        score.gaussian_score(x, sig, mu, cov), atol=1e-12)
    # Tweedie: D = x + σ²·score = μ + Σ(Σ + σ²I)^{-1}(x − μ).
    want = mu + (x - mu) @ (cov @ np.linalg.inv(cov + 0.49 * np.eye(3))).T
    np.testing.assert_allclose(score.gaussian_denoiser(x, 0.7, mu, cov), want,
                               atol=1e-12)
    # Registry.
    assert set(score.ANALYTIC_SCORES) == {'gaussian', 'gmm', 'delta_mixture'}


def test_large_sigma_gaussian_and_delta_mixture_agree_to_first_order():
  with jax.enable_x64(True):
    pts = np.random.default_rng(0).normal(size=(50, 3))
    mu, cov = pts.mean(0), np.cov(pts.T, bias=True)
    x = _x()
    for sig in (30.0, 100.0):
      g = score.gaussian_score(x, sig, mu, cov)
      dm = score.delta_mixture_score(x, sig, pts)
      first = (mu - x) / sig**2
      # both are (μ − x)/σ² + O(σ^{-4}); their gap is O(σ^{-4}).
      assert np.abs(g - dm).max() < 50 / sig**4 * np.abs(first).max() * sig**2


def test_process_score_maps_ve_to_vp():
  # For VP the marginal of Gaussian data is N(αμ, α²Σ + σ²I).
  with jax.enable_x64(True):
    x, (mu, cov) = _x(), _gauss()
    m = losses.PROCESSES['vp'](np.linspace(0.1, 0.9, 7))
    got = score.process_score(
        lambda y, s: score.gaussian_score(y, s, mu, cov), x, m.alpha, m.sigma)
    want = np.stack([np.linalg.solve(a**2 * cov + s**2 * np.eye(3),
                                     a * mu - xi)
                     for xi, a, s in zip(x, m.alpha, m.sigma)])
    np.testing.assert_allclose(got, want, atol=1e-12)


# --- §7 trajectory and teleport ---------------------------------------------


@pytest.mark.parametrize('rank', [None, 2])
def test_gaussian_trajectory_solves_the_pf_ode(rank):
  with jax.enable_x64(True):
    mu, cov = _gauss(rank=rank)
    x_T = _x(b=4)
    traj = lambda s: score.gaussian_pf_trajectory(x_T, 10.0, s, mu, cov)
    np.testing.assert_allclose(traj(10.0), x_T, atol=1e-12)
    for s in (0.3, 1.0, 4.0):
      dx = jax.jacfwd(traj)(jnp.float64(s))
      rhs = -s * score.gaussian_score(traj(s), s, mu, cov)
      np.testing.assert_allclose(dx, rhs, atol=1e-10)
    mid = score.gaussian_pf_trajectory(x_T, 10.0, 2.0, mu, cov)
    np.testing.assert_allclose(
        score.gaussian_pf_trajectory(mid, 2.0, 0.5, mu, cov), traj(0.5),
        atol=1e-12)


def test_teleport_under_vp_matches_ve_trajectory():
  with jax.enable_x64(True):
    mu, cov = _gauss()
    x = _x(b=4)
    proc = losses.PROCESSES['vp']
    a, b = proc(0.9), proc(0.4)
    got = score.teleport(x, 0.9, 0.4, proc, mu, cov)
    want = b.alpha * score.gaussian_pf_trajectory(
        x / a.alpha, a.sigma / a.alpha, b.sigma / b.alpha, mu, cov)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert score.teleport_index(18) == 4
    with pytest.raises(ValueError, match='fraction'):
      score.teleport_index(18, 1.0)
