"""SFT kernels against float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain.losses import _reduce
from postrain.losses import _sft
from postrain.losses._policy_gradient import entropy


def _np_reference(logits, targets, mask, eps, c):
  logits = logits.astype(np.float64)
  m = logits.max(-1, keepdims=True)
  log_z = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
  logp = logits - log_z[..., None]
  v = logits.shape[-1]
  q = np.full(logits.shape, eps / v)
  np.put_along_axis(q, targets[..., None],
                    np.take_along_axis(q, targets[..., None], -1) + 1 - eps,
                    -1)
  ce = -(q * logp).sum(-1) + c * log_z**2
  return ce * mask, np.take_along_axis(logp, targets[..., None], -1)[..., 0]


def _inputs(seed=0, b=3, t=7, v=11):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, t, v)).astype(np.float32) * 3
  targets = rng.integers(0, v, size=(b, t))
  mask = (rng.random((b, t)) > 0.3).astype(np.float32)
  return logits, targets, mask


@pytest.mark.parametrize('eps,c', [(0.0, 0.0), (0.1, 0.0), (0.0, 1e-2),
                                   (0.2, 1e-3)])
def test_cross_entropy_matches_float64(eps, c):
  logits, targets, mask = _inputs()
  loss, aux = _sft.cross_entropy(
      _sft.logit_stats(jnp.asarray(logits), jnp.asarray(targets)),
      jnp.asarray(mask), label_smoothing=eps, z_loss=c)
  ref, ref_logp = _np_reference(logits, targets, mask, eps, c)
  np.testing.assert_allclose(loss, ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(-aux['nll'], ref_logp, rtol=1e-5, atol=1e-5)


def test_chunked_equals_full_with_softcap_and_grads():
  rng = np.random.default_rng(1)
  b, t, d, v = 2, 13, 8, 19
  h = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(d, v)), jnp.float32)
  y = jnp.asarray(rng.integers(0, v, (b, t)))
  mask = jnp.asarray(rng.random((b, t)) > 0.2, jnp.float32)

  def full(h, w):
    logits = 5.0 * jnp.tanh((h @ w) / 5.0)
    loss, _ = _sft.cross_entropy(_sft.logit_stats(logits, y), mask,
                                 label_smoothing=0.1, z_loss=1e-3)
    return loss.sum()

  def chunked(h, w):
    stats = _sft.chunked_logit_stats(h, w, y, soft_cap=5.0, chunk_size=4)
    loss, _ = _sft.cross_entropy(stats, mask, label_smoothing=0.1,
                                 z_loss=1e-3)
    return loss.sum()

  np.testing.assert_allclose(chunked(h, w), full(h, w), rtol=1e-5)
  g_full = jax.grad(full, argnums=(0, 1))(h, w)
  g_chunk = jax.jit(jax.grad(chunked, argnums=(0, 1)))(h, w)
  for a, b_ in zip(g_chunk, g_full):
    np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)


def test_z_loss_gradient_closed_form():
  # d/dlogits c·(log Z)² = 2c·log Z·softmax(logits) (optim_schedules.md §4).
  logits, targets, _ = _inputs(2, b=1, t=1)
  c = 0.3

  def zl(lg):
    stats = _sft.logit_stats(lg, jnp.asarray(targets))
    loss, _ = _sft.cross_entropy(stats, jnp.ones((1, 1)), z_loss=c)
    return (loss - (stats['log_z'] - stats['target'])).sum()

  g = jax.grad(zl)(jnp.asarray(logits))
  lg = logits.astype(np.float64)
  log_z = np.log(np.exp(lg).sum(-1, keepdims=True))
  expected = 2 * c * log_z * np.exp(lg - log_z)
  np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-6)


def test_masked_equals_sliced_and_empty_mask_is_finite():
  logits, targets, _ = _inputs(3)
  mask = np.zeros(targets.shape, np.float32)
  mask[:, :4] = 1
  stats = _sft.logit_stats(jnp.asarray(logits), jnp.asarray(targets))
  loss, _ = _sft.cross_entropy(stats, jnp.asarray(mask))
  stats_s = _sft.logit_stats(jnp.asarray(logits[:, :4]),
                             jnp.asarray(targets[:, :4]))
  loss_s, _ = _sft.cross_entropy(stats_s, jnp.ones((3, 4)))
  np.testing.assert_allclose(_reduce.token_mean(loss, jnp.asarray(mask)),
                             loss_s.mean(), rtol=1e-6)
  empty = jnp.zeros_like(jnp.asarray(mask))
  assert float(_reduce.token_mean(loss, empty)) == 0.0


def test_bf16_inputs_and_extreme_logits_are_finite():
  logits, targets, mask = _inputs(4)
  big = jnp.asarray(logits * 1e4, jnp.bfloat16)
  stats = _sft.logit_stats(big, jnp.asarray(targets))
  assert stats['log_z'].dtype == jnp.float32
  loss, _ = _sft.cross_entropy(stats, jnp.asarray(mask), z_loss=1e-4)
  assert np.isfinite(np.asarray(loss)).all()
  ref, _ = _np_reference(np.asarray(big.astype(jnp.float32)), targets, mask,
                         0.0, 1e-4)
  np.testing.assert_allclose(loss, ref, rtol=1e-3)


def test_sequence_logprobs_sum_over_mask():
  logits, targets, mask = _inputs(5)
  stats = _sft.logit_stats(jnp.asarray(logits), jnp.asarray(targets))
  seq = _sft.sequence_logprobs(_sft.token_logprobs(stats), jnp.asarray(mask))
  _, ref_logp = _np_reference(logits, targets, mask, 0.0, 0.0)
  np.testing.assert_allclose(seq, (ref_logp * mask).sum(-1), rtol=1e-5)


def test_entropy_matches_float64_and_the_streaming_kernel():
  logits, targets, _ = _inputs(6)
  z = logits.astype(np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  ref = -(p * np.log(p)).sum(-1)
  stats = _sft.logit_stats(jnp.asarray(logits), jnp.asarray(targets))
  np.testing.assert_allclose(stats['entropy'], ref, rtol=1e-5, atol=1e-6)
  h = jnp.asarray(logits[..., :3], jnp.float32)  # chunked path: D = 3
  w = jnp.asarray(np.random.default_rng(0).normal(size=(3, logits.shape[-1])),
                  jnp.float32)
  chunked = _sft.chunked_logit_stats(h, w, jnp.asarray(targets), chunk_size=2)
  np.testing.assert_allclose(
      chunked['entropy'],
      entropy(jnp.einsum('btd,dv->btv', h, w), jnp.ones(targets.shape)),
      rtol=1e-5, atol=1e-6)
  banned = jnp.asarray(logits).at[..., 0].set(-jnp.inf)
  assert np.isfinite(_sft.logit_stats(banned, jnp.asarray(targets) % 3 + 1)[
      'entropy']).all()
