"""Metrics against numpy and their spec properties (specs/score.md §9)."""

import jax
import numpy as np
import pytest

from postrain import score


def _np_mmd2(x, y, h):
  k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * h**2))
  n, m = len(x), len(y)
  kxx, kyy = k(x, x), k(y, y)
  return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
          + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * k(x, y).mean())


def test_mmd_and_bandwidth_against_numpy():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    z = np.concatenate([x, y])
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
    h = np.median(d[~np.eye(70, dtype=bool)])
    np.testing.assert_allclose(score.median_bandwidth(x, y), h, rtol=1e-12)
    np.testing.assert_allclose(score.mmd2(x, y), _np_mmd2(x, y, h),
                               rtol=1e-10)
    np.testing.assert_allclose(score.mmd2(x, y, bandwidth=0.7),
                               _np_mmd2(x, y, 0.7), rtol=1e-10)


def test_mmd_unbiased_near_zero_for_one_distribution():
  rng = np.random.default_rng(1)
  vals = [float(score.mmd2(rng.normal(size=(100, 2)), rng.normal(size=(100, 2))))
          for _ in range(60)]
  shifted = float(score.mmd2(rng.normal(size=(100, 2)),
                             rng.normal(size=(100, 2)) + 1.0))
  assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(60)
  assert shifted > 10 * np.std(vals)


def test_sliced_wasserstein_against_numpy_and_properties():
  with jax.enable_x64(True):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) * 2
    key = jax.random.key(0)
    dirs = np.array(jax.random.normal(key, (3, 16), np.float64))
    dirs /= np.linalg.norm(dirs, axis=0)
    px, py = np.sort(x @ dirs, 0), np.sort(y @ dirs, 0)
    want = np.mean(np.abs(px - py) ** 2) ** 0.5
    np.testing.assert_allclose(
        score.sliced_wasserstein(x, y, key, num_projections=16), want,
        rtol=1e-12)
    assert float(score.sliced_wasserstein(x, x, key)) == 0.0
  # In 1-D, W2(N(0,1), N(m,1)) -> |m|.
  a = rng.normal(size=(20000, 1))
  b = rng.normal(size=(20000, 1)) + 1.5
  assert abs(float(score.sliced_wasserstein(a, b, key)) - 1.5) < 0.03
  with pytest.raises(ValueError, match='equal sample sizes'):
    score.sliced_wasserstein(a, b[:10], key)


def test_score_r2():
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(100, 2))
    assert float(score.score_r2(ref, ref)) == 1.0
    np.testing.assert_allclose(score.score_r2(np.broadcast_to(
        ref.mean(0), ref.shape), ref), 0.0, atol=1e-12)
    noisy = ref + 0.1 * rng.normal(size=ref.shape)
    want = 1 - ((noisy - ref) ** 2).sum(1).mean() / (
        (ref - ref.mean(0)) ** 2).sum(1).mean()
    np.testing.assert_allclose(score.score_r2(noisy, ref), want, rtol=1e-12)
