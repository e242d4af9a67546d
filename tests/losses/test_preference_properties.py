"""The exact per-pair properties that specs/preference.md names per variant.

Algebraic identities run under float64 with tolerance 1e-10.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain.losses import _preference as pref

TOL = dict(rtol=1e-10, atol=1e-10)
LOG2 = np.log(2.0)


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _rand(seed=0, n=5, scale=3.0):
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.normal(size=n) * scale) for _ in range(4)]


def _grad_h(fn, h_w=0.0, h_l=0.0, **hp):
  """(ℓ, ∂ℓ/∂h_w, ∂ℓ/∂h_l) of a pair kernel at log-ratios (h_w, h_l)."""
  z = jnp.zeros(1)
  f = lambda a, b: fn(a, b, z, z, **hp)[0]
  a, b = jnp.full(1, float(h_w)), jnp.full(1, float(h_l))
  gw, gl = jax.grad(f, argnums=(0, 1))(a, b)
  return float(f(a, b)), float(gw[0]), float(gl[0])


def _delta_grad(fn, delta, **hp):
  z = jnp.zeros(1)
  return float(jax.grad(lambda d: fn(d, z, z, z, **hp)[0])(jnp.full(1, delta)
                                                           )[0])


def _logit(p):
  return float(np.log(p) - np.log1p(-p))


def test_sigmoid_at_zero_margin():
  loss, gw, gl = _grad_h(pref.dpo_loss, 0.7, 0.7, beta=0.3)
  np.testing.assert_allclose([loss, gw, gl], [LOG2, -0.15, 0.15], **TOL)


def test_cdpo_zero_epsilon_is_sigmoid_and_minimiser():
  a = _rand(1)
  np.testing.assert_allclose(pref.cdpo_loss(*a, beta=0.4, epsilon=0.0),
                             pref.dpo_loss(*a, beta=0.4), **TOL)
  eps, beta = 0.1, 0.4
  d_star = _logit(1 - eps) / beta
  assert abs(_delta_grad(pref.cdpo_loss, d_star, beta=beta,
                         epsilon=eps)) < 1e-12
  assert _delta_grad(pref.cdpo_loss, d_star + 1, beta=beta, epsilon=eps) > 0
  assert _delta_grad(pref.cdpo_loss, d_star - 1, beta=beta, epsilon=eps) < 0


@pytest.mark.parametrize('eps', [0.0, 0.1, 0.3, 0.49])
def test_robust_unbiasedness_identity(eps):
  lw, ll, rw, rl = _rand(2, scale=10.0)
  fwd = pref.robust_dpo_loss(lw, ll, rw, rl, beta=0.3, epsilon=eps)
  rev = pref.robust_dpo_loss(ll, lw, rl, rw, beta=0.3, epsilon=eps)
  np.testing.assert_allclose((1 - eps) * fwd + eps * rev,
                             pref.dpo_loss(lw, ll, rw, rl, beta=0.3), **TOL)


def test_robust_rejects_half():
  z = jnp.zeros(1)
  with pytest.raises(ValueError, match='epsilon'):
    pref.robust_dpo_loss(z, z, z, z, epsilon=0.5)


@pytest.mark.parametrize('normalize', [False, True])
def test_ipo_minimiser(normalize):
  tau, n = 0.2, 3.0
  lens = dict(len_w=jnp.full(1, n), len_l=jnp.full(1, n))
  d_star = 1 / (2 * tau) * (n if normalize else 1.0)
  hp = dict(beta=tau, length_normalize=normalize)
  z = jnp.zeros(1)
  f = lambda d: pref.ipo_loss(d, z, z, z, **lens, **hp)[0]
  d = jnp.full(1, d_star)
  np.testing.assert_allclose([f(d), jax.grad(f)(d)[0]], [0.0, 0.0], **TOL)
  assert f(d + 0.1) > 0 and f(d - 0.1) > 0


def test_ipo_needs_lengths_to_normalise():
  z = jnp.zeros(1)
  with pytest.raises(ValueError, match='len_w'):
    pref.ipo_loss(z, z, z, z, length_normalize=True)


def test_hinge_zero_past_margin_and_slope_below():
  beta = 0.25
  for h_w in (4.0, 5.0, 40.0):  # βΔ ≥ 1.
    loss, gw, gl = _grad_h(pref.slic_hinge_loss, h_w, 0.0, beta=beta)
    assert (loss, gw, gl) == (0.0, 0.0, 0.0)
  loss, gw, gl = _grad_h(pref.slic_hinge_loss, 1.0, -1.0, beta=beta)
  np.testing.assert_allclose([loss, gw, gl], [0.5, -beta, beta], **TOL)


def test_dpo_norm_equal_lengths_is_sigmoid_with_beta_over_n():
  a, n = _rand(3), 7.0
  lens = jnp.full(5, n)
  np.testing.assert_allclose(pref.dpo_norm_loss(*a, lens, lens, beta=2.0),
                             pref.dpo_loss(*a, beta=2.0 / n), **TOL)


def test_rpo_gradient_additivity_and_alpha_zero():
  lw, ll, rw, rl = _rand(4)
  n = jnp.arange(1.0, 6.0)
  np.testing.assert_allclose(pref.rpo_loss(lw, ll, rw, rl, n, alpha=0.0),
                             pref.dpo_loss(lw, ll, rw, rl), **TOL)
  g = lambda f: jax.grad(lambda x: f(x).sum())(lw)
  rpo = g(lambda x: pref.rpo_loss(x, ll, rw, rl, n, beta=0.3, alpha=0.6))
  dpo = g(lambda x: pref.dpo_loss(x, ll, rw, rl, beta=0.3))
  nll = g(lambda x: -x / n)
  np.testing.assert_allclose(rpo, dpo + 0.6 * nll, **TOL)


def test_simpo_gamma_zero_is_dpo_norm_with_uniform_reference():
  lw, ll, _, _ = _rand(5)
  n_w, n_l, v = jnp.arange(1.0, 6.0), jnp.arange(6.0, 1.0, -1), 11.0
  uniform_w, uniform_l = -n_w * np.log(v), -n_l * np.log(v)
  np.testing.assert_allclose(
      pref.simpo_loss(lw, ll, n_w, n_l, beta=2.0, gamma=0.0),
      pref.dpo_norm_loss(lw, ll, uniform_w, uniform_l, n_w, n_l, beta=2.0),
      **TOL)


def test_orpo_equal_means_and_log_odds_numerics():
  n = jnp.array([1.0, 4.0])
  logp_w, logp_l = jnp.array([-0.3, -8.0]), jnp.array([-0.3, -8.0])
  got = pref.orpo_loss(logp_w, logp_l, n, n, lam=0.3)
  np.testing.assert_allclose(got, -logp_w / n + 0.3 * LOG2, **TOL)
  m = np.array([-1e-5, -0.7, -30.0])
  want = m - np.log(-np.expm1(m))
  with jax.enable_x64(False):  # the float32 path must hold too.
    np.testing.assert_allclose(pref.orpo_log_odds(m.astype(np.float32)),
                               want, rtol=1e-5)
  np.testing.assert_allclose(pref.orpo_log_odds(jnp.asarray(m)), want, **TOL)


def test_kto_reference_point_properties():
  rng = np.random.default_rng(6)
  logp, ref, mis, mis_ref = (jnp.asarray(rng.normal(size=6)) for _ in range(4))
  desirable = jnp.array([1, 0, 1, 0, 1, 0])
  z0 = pref.kto_reference_point(mis, mis_ref)
  assert z0 >= 0 and pref.kto_reference_point(mis - 10, mis_ref) == 0
  # At h = z0 every row's loss is λ/2.
  got = pref.kto_loss(z0 + ref, ref, mis, mis_ref, desirable,
                      lambda_d=1.5, lambda_u=0.5)
  np.testing.assert_allclose(got, np.where(desirable, 0.75, 0.25), **TOL)
  # z0 depends on the mismatched pairs only, and no gradient flows into it.
  f = lambda lp, m: pref.kto_loss(lp, ref, m, mis_ref, desirable).sum()
  base = pref.kto_loss(logp, ref, mis, mis_ref, desirable)
  moved = pref.kto_loss(logp.at[0].add(4.0), ref, mis, mis_ref, desirable)
  np.testing.assert_array_equal(moved[1:], base[1:])
  assert moved[0] != base[0]
  g_mis = jax.grad(f, argnums=1)(logp, mis + 3.0)
  np.testing.assert_array_equal(g_mis, np.zeros(6))


@pytest.mark.parametrize('name,want', [
    ('nca_pair', (2 * LOG2, -0.25, 0.25)),
    ('bco_pair', (2 * LOG2, -0.5, 0.5)),
    ('apo_zero', (1.0, -0.25, 0.25)),
    ('apo_down', (1.0, 0.0, 0.25)),
])
def test_values_and_gradients_at_zero(name, want):
  beta = 0.4
  loss, gw, gl = _grad_h(pref.PREFERENCE_LOSSES[name], beta=beta)
  np.testing.assert_allclose([loss, gw / beta, gl / beta], want, **TOL)


def test_exo_nonnegative_and_zero_at_target():
  eps, beta = 0.05, 0.3
  lw, ll, rw, rl = _rand(7, scale=10.0)
  assert (pref.exo_pair_loss(lw, ll, rw, rl, beta=beta, epsilon=eps)
          >= 0).all()
  d_star = _logit(1 - eps) / beta
  z = jnp.zeros(1)
  val = pref.exo_pair_loss(jnp.full(1, d_star), z, z, z, beta=beta,
                           epsilon=eps)
  np.testing.assert_allclose(val, 0.0, **TOL)
  assert abs(_delta_grad(pref.exo_pair_loss, d_star, beta=beta,
                         epsilon=eps)) < 1e-12


def test_sppo_hard_unique_minimiser():
  beta = 0.25
  loss, gw, gl = _grad_h(pref.sppo_hard_loss, 2.0, -2.0, beta=beta)
  np.testing.assert_allclose([loss, gw, gl], [0.0, 0.0, 0.0], **TOL)
  for dw, dl in [(0.1, 0), (0, 0.1), (-0.1, 0.1)]:
    assert _grad_h(pref.sppo_hard_loss, 2 + dw, -2 + dl, beta=beta)[0] > 0


def test_d2o_reduces_to_dpo_and_is_permutation_invariant():
  lw, ll, rw, rl = _rand(8)
  np.testing.assert_allclose(
      pref.d2o_loss(lw[:, None], rw[:, None], ll, rl, beta=0.3, alpha=0.3),
      pref.dpo_loss(lw, ll, rw, rl, beta=0.3), **TOL)
  rng = np.random.default_rng(9)
  s, sr = rng.normal(size=(5, 11)), rng.normal(size=(5, 11))
  p = rng.permutation(11)
  np.testing.assert_allclose(pref.d2o_loss(s, sr, ll, rl),
                             pref.d2o_loss(s[:, p], sr[:, p], ll, rl), **TOL)


def test_inpo_with_previous_equal_reference_is_unnormalised_ipo():
  lw, ll, rw, rl = _rand(10)
  np.testing.assert_allclose(
      pref.inpo_loss(lw, ll, rw, rl, rw, rl, eta=0.4, tau=0.1),
      pref.ipo_loss(lw, ll, rw, rl, beta=0.4, length_normalize=False), **TOL)
  with pytest.raises(ValueError, match='tau'):
    pref.inpo_loss(lw, ll, rw, rl, rw, rl, eta=0.1, tau=0.2)


def test_jpo_shared_prompt_is_sigmoid_and_forms():
  lw, ll, rw, rl = _rand(11)
  px, pxr = _rand(12)[:2]
  sig = pref.dpo_loss(lw, ll, rw, rl, beta=0.3)
  np.testing.assert_allclose(pref.jpo_loss(lw, ll, rw, rl, beta=0.3), sig,
                             **TOL)
  shared = pref.jpo_loss(lw, ll, rw, rl, px, px, pxr, pxr, beta=0.3,
                         include_prompt=True)
  np.testing.assert_allclose(shared, sig, **TOL)
  np.testing.assert_allclose(pref.jpo_loss(lw, ll, rw, rl, form='hinge'),
                             pref.slic_hinge_loss(lw, ll, rw, rl), **TOL)
  np.testing.assert_allclose(pref.jpo_loss(lw, ll, rw, rl, form='ipo'),
                             pref.ipo_loss(lw, ll, rw, rl), **TOL)
  with pytest.raises(ValueError, match='include_prompt'):
    pref.jpo_loss(lw, ll, rw, rl, px, px, pxr, pxr)


def test_preference_diagnostics_values():
  lw, ll, rw, rl = _rand(13)
  n_w, n_l = jnp.arange(1.0, 6.0), jnp.arange(2.0, 7.0)
  beta = jnp.linspace(0.1, 0.5, 5)
  d = pref.preference_diagnostics(lw, ll, rw, rl, n_w, n_l, beta=beta)
  hw, hl = np.asarray(lw - rw), np.asarray(ll - rl)
  b = np.asarray(beta)
  np.testing.assert_allclose(d['rewards/chosen'], b * hw, **TOL)
  np.testing.assert_allclose(d['rewards/rejected'], b * hl, **TOL)
  np.testing.assert_allclose(d['rewards/margin'], b * (hw - hl), **TOL)
  np.testing.assert_array_equal(d['rewards/accuracy'], hw > hl)
  np.testing.assert_array_equal(d['ranking_accuracy'], lw > ll)
  np.testing.assert_array_equal(d['ranking_accuracy_normalized'],
                                lw / n_w > ll / n_l)
  np.testing.assert_allclose(d['logps/chosen_per_token'], lw / n_w, **TOL)
  np.testing.assert_array_equal(d['beta'], b)
  free = pref.preference_diagnostics(lw, ll, beta=0.5)
  np.testing.assert_allclose(free['rewards/margin'], 0.5 * (lw - ll), **TOL)


def test_bradley_terry_minimiser_magnitude_and_accuracy():
  eps, mu = 0.1, 0.7
  z = jnp.zeros(1)
  f = lambda d, **hp: pref.bradley_terry_loss(d, z, **hp)[0]
  d_star = mu + _logit(1 - eps)
  g = jax.grad(lambda d: f(d, margin=mu, label_smoothing=eps))
  assert abs(float(g(jnp.full(1, d_star))[0])) < 1e-12
  assert float(g(jnp.full(1, d_star + 0.5))[0]) > 0
  rc, rr = _rand(14)[:2]
  m = jnp.array([1.0, 2.0, 3.0, 1.0, 2.0])
  g1 = jax.grad(lambda r: pref.bradley_terry_loss(r, rr, margin=0.3).sum())(rc)
  gm = jax.grad(lambda r: pref.bradley_terry_loss(
      r, rr, margin=0.3, magnitude=m).sum())(rc)
  np.testing.assert_allclose(gm, m * g1, **TOL)
  cen = pref.bradley_terry_loss(rc, rr, centering=0.01)
  np.testing.assert_allclose(cen - pref.bradley_terry_loss(rc, rr),
                             0.01 * (rc + rr) ** 2, **TOL)
  np.testing.assert_array_equal(pref.reward_accuracy(rc, rr), rc > rr)


def test_flip_low_strength():
  rng = np.random.default_rng(16)
  d_ens = jnp.asarray(rng.normal(0.5, 1.0, size=(20, 4)))
  flip = pref.flip_low_strength(d_ens, fraction=0.2)
  u = np.asarray(d_ens).mean(-1)
  lowest = np.argsort(u)[:4]
  np.testing.assert_array_equal(np.flatnonzero(flip),
                                np.sort(lowest[u[lowest] < 0]))
  # Flipping the mask's pairs leaves every flipped pair with positive
  # strength, so a second pass flips nothing new when all negatives were
  # caught (idempotent given the ensemble outputs).
  oriented = jnp.where(flip[:, None], -d_ens, d_ens)
  assert 0 < (u < 0).sum() <= 4
  assert not pref.flip_low_strength(oriented, fraction=0.2).any()


def test_dynamic_beta_monotone_and_floored():
  delta = jnp.linspace(-50.0, 50.0, 101)
  beta = pref.dynamic_beta(delta, k=0.5, beta0=0.1, w=0.1)
  assert (jnp.diff(beta) >= 0).all() and (beta >= 1e-3).all()
  floored = pref.dynamic_beta(delta, k=0.5, beta0=0.1, w=50.0)
  assert float(floored.min()) == 1e-3 and jnp.isfinite(floored).all()
  np.testing.assert_allclose(
      pref.dynamic_beta(jnp.array([0.0, 2.0]), k=0.5),
      0.1 * (1 + 0.1 * (1 - np.exp(-0.5 * np.array([0.0, 2.0])))), **TOL)


def test_orpo_and_kto_diagnostics():
  n = jnp.array([2.0, 5.0])
  lw, ll = jnp.array([-1.0, -4.0]), jnp.array([-3.0, -2.0])
  d = pref.orpo_diagnostics(lw, ll, n, n)
  lo = lambda m: m - np.log(-np.expm1(m))
  np.testing.assert_allclose(d['nll'], -lw / n, **TOL)
  np.testing.assert_allclose(d['log_odds_chosen'], lo(lw / n), **TOL)
  np.testing.assert_allclose(d['log_odds_ratio'], lo(lw / n) - lo(ll / n),
                             **TOL)
  # The loss's odds term is −λ·logσ(log_odds_ratio).
  np.testing.assert_allclose(
      pref.orpo_loss(lw, ll, n, n, lam=0.5) - d['nll'],
      -0.5 * jax.nn.log_sigmoid(d['log_odds_ratio']), **TOL)
  k = pref.kto_diagnostics(lw, ll, lw + 1.0, ll, jnp.array([1, 0]), beta=0.5)
  np.testing.assert_allclose(k['kl'], 1.0, **TOL)
  np.testing.assert_allclose(k['rewards'], 0.5 * (lw - ll), **TOL)
  np.testing.assert_array_equal(k['desirable'] + k['undesirable'], 1.0)


def test_kto_reference_point_is_global_under_axis_name():
  rng = np.random.default_rng(17)
  mis, mis_ref = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)) - 1.0
  sharded = jax.vmap(lambda a, b: pref.kto_reference_point(
      a, b, axis_name='data'), axis_name='data')(mis, mis_ref)
  want = max(0.0, float(np.mean(mis - mis_ref)))
  np.testing.assert_allclose(sharded, [want, want], **TOL)
