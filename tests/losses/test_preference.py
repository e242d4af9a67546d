"""Preference kernels against float64 numpy references and spec properties."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain.losses import _preference as pref
from postrain.losses import _preference_dpo
from postrain.losses import _preference_more

SPEC_NAMES = ('sigmoid cdpo robust ipo hinge dpo_norm rpo simpo orpo kto '
              'nca_pair exo_pair apo_zero apo_down sppo_hard bco_pair d2o '
              'inpo jpo').split()
B, J = 6, 3


# ---------------------------------------------------------------- references
def _ls(z):  # log σ(z) in float64.
  return -np.logaddexp(0.0, -z)


def _sig(z):
  return np.exp(_ls(z))


def _np_log1mexp(a):
  return np.log(-np.expm1(a))


def _np_ref(name, k, hp):
  """Float64 numpy reference of every registry variant (written apart)."""
  k = {n: np.asarray(v, np.float64) for n, v in k.items()}
  b = np.asarray(hp.get('beta', 0.0), np.float64)
  if 'ref_w' in k:
    hw, hl = k['logp_w'] - k['ref_w'], k['logp_l'] - k['ref_l']
    d = hw - hl
  if name == 'sigmoid':
    return -_ls(b * d)
  if name == 'cdpo':
    e = hp['epsilon']
    return -(1 - e) * _ls(b * d) - e * _ls(-b * d)
  if name == 'robust':
    e = hp['epsilon']
    return ((1 - e) * -_ls(b * d) - e * -_ls(-b * d)) / (1 - 2 * e)
  if name == 'ipo':
    if hp.get('length_normalize'):
      d = hw / k['len_w'] - hl / k['len_l']
    return (d - 1 / (2 * b)) ** 2
  if name == 'hinge':
    return np.maximum(0.0, 1 - b * d)
  if name == 'dpo_norm':
    return -_ls(b * (hw / k['len_w'] - hl / k['len_l']))
  if name == 'rpo':
    return -_ls(b * d) - hp['alpha'] * k['logp_w'] / k['len_w']
  if name == 'simpo':
    e = hp['epsilon']
    z = b * (k['logp_w'] / k['len_w'] - k['logp_l'] / k['len_l']) - hp['gamma']
    return -(1 - e) * _ls(z) - e * _ls(-z)
  if name == 'orpo':
    mw, ml = k['logp_w'] / k['len_w'], k['logp_l'] / k['len_l']
    odds = lambda m: m - _np_log1mexp(m)
    return -mw - hp['lam'] * _ls(odds(mw) - odds(ml))
  if name == 'kto':
    z0 = max(0.0, np.mean(k['logp_mismatch'] - k['ref_mismatch']))
    v = b * (k['logp'] - k['ref'] - z0)
    return np.where(k['desirable'] > 0, hp['lambda_d'] * (1 - _sig(v)),
                    hp['lambda_u'] * (1 - _sig(-v)))
  if name == 'nca_pair':
    return -_ls(b * hw) - 0.5 * _ls(-b * hw) - 0.5 * _ls(-b * hl)
  if name == 'exo_pair':
    e, q = hp['epsilon'], _sig(b * d)
    return q * (np.log(q) - np.log(1 - e)) + (1 - q) * (
        np.log(1 - q) - np.log(e))
  if name == 'apo_zero':
    return 1 - _sig(b * hw) + _sig(b * hl)
  if name == 'apo_down':
    return _sig(b * hw) + 1 - _sig(b * d)
  if name == 'sppo_hard':
    return (hw - 1 / (2 * b)) ** 2 + (hl + 1 / (2 * b)) ** 2
  if name == 'bco_pair':
    dl = hp['delta']
    return -_ls(b * hw - dl) - _ls(-(b * hl - dl))
  if name == 'd2o':
    s = (k['logp_samples'] - k['ref_samples']).sum(-1)
    return -_ls(b * s / J - hp['alpha'] * (k['logp_l'] - k['ref_l']))
  if name == 'inpo':
    eta, tau = hp['eta'], hp['tau']
    g = ((k['logp_w'] - k['logp_l']) - tau / eta * (k['ref_w'] - k['ref_l'])
         - (eta - tau) / eta * (k['prev_w'] - k['prev_l']))
    return (g - 1 / (2 * eta)) ** 2
  if name == 'jpo':
    hw = hw + k['prompt_logp_w'] - k['prompt_ref_w']
    hl = hl + k['prompt_logp_l'] - k['prompt_ref_l']
    return -_ls(b * (hw - hl))
  raise KeyError(name)


# ------------------------------------------------------------------- inputs
_PAIR = ('logp_w', 'logp_l', 'ref_w', 'ref_l')
_LENS = ('len_w', 'len_l')
_SIGNATURES = {  # name -> (float array inputs, other inputs, hyperparams)
    'sigmoid': (_PAIR, (), dict(beta=0.3)),
    'cdpo': (_PAIR, (), dict(beta=0.3, epsilon=0.1)),
    'robust': (_PAIR, (), dict(beta=0.3, epsilon=0.2)),
    'ipo': (_PAIR, _LENS, dict(beta=0.2, length_normalize=True)),
    'hinge': (_PAIR, (), dict(beta=0.3)),
    'dpo_norm': (_PAIR, _LENS, dict(beta=2.0)),
    'rpo': (_PAIR, ('len_w',), dict(beta=0.3, alpha=0.7)),
    'simpo': (('logp_w', 'logp_l'), _LENS,
              dict(beta=2.0, gamma=0.5, epsilon=0.1)),
    'orpo': (('logp_w', 'logp_l'), _LENS, dict(lam=0.2)),
    'kto': (('logp', 'ref', 'logp_mismatch', 'ref_mismatch'), ('desirable',),
            dict(beta=0.3, lambda_d=1.0, lambda_u=0.8)),
    'nca_pair': (_PAIR, (), dict(beta=0.3)),
    'exo_pair': (_PAIR, (), dict(beta=0.3, epsilon=0.05)),
    'apo_zero': (_PAIR, (), dict(beta=0.3)),
    'apo_down': (_PAIR, (), dict(beta=0.3)),
    'sppo_hard': (_PAIR, (), dict(beta=0.5)),
    'bco_pair': (_PAIR, (), dict(beta=0.3, delta=0.2)),
    'd2o': (('logp_samples', 'ref_samples', 'logp_l', 'ref_l'), (),
            dict(beta=0.3, alpha=0.2)),
    'inpo': (_PAIR + ('prev_w', 'prev_l'), (), dict(eta=0.5, tau=0.2)),
    'jpo': (_PAIR + ('prompt_logp_w', 'prompt_logp_l', 'prompt_ref_w',
                     'prompt_ref_l'), (), dict(beta=0.3, include_prompt=True)),
}


def _inputs(name, seed=0, scale=8.0):
  rng = np.random.default_rng(seed)
  floats, others, hp = _SIGNATURES[name]
  k = {}
  for n in floats:
    shape = (B, J) if n.endswith('samples') else (B,)
    k[n] = (-rng.uniform(0.5, 2.0, shape) * scale).astype(np.float32)
  for n in others:
    if n == 'desirable':
      k[n] = np.array([1, 0] * (B // 2), np.int32)
    else:
      k[n] = rng.integers(1, 12, (B,)).astype(np.float32)
  return k, floats, hp


def _call(name, k, hp):
  return pref.PREFERENCE_LOSSES[name](
      **{n: jnp.asarray(v) for n, v in k.items()}, **hp)


# --------------------------------------------------------- generic kernels
def test_registry_has_exactly_the_spec_names():
  assert list(pref.PREFERENCE_LOSSES) == SPEC_NAMES
  assert set(_SIGNATURES) == set(SPEC_NAMES)


@pytest.mark.parametrize('name', SPEC_NAMES)
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_float64_reference(name, seed):
  k, _, hp = _inputs(name, seed)
  got = _call(name, k, hp)
  assert got.shape == (B,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, _np_ref(name, k, hp), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize('name', [n for n in SPEC_NAMES
                                  if 'beta' in _SIGNATURES[n][2]])
def test_per_example_beta(name):
  k, _, hp = _inputs(name, 2)
  betas = np.linspace(0.1, 0.9, B).astype(np.float32)
  got = _call(name, k, {**hp, 'beta': jnp.asarray(betas)})
  want = [_np_ref(name, k, {**hp, 'beta': b})[i] for i, b in enumerate(betas)]
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  const = _call(name, k, {**hp, 'beta': jnp.full((B,), hp['beta'])})
  np.testing.assert_allclose(const, _call(name, k, hp), rtol=1e-6)


@pytest.mark.parametrize('name', SPEC_NAMES)
def test_bf16_inputs_give_float32(name):
  k, floats, hp = _inputs(name, 3, scale=2.0)
  kb = {n: (jnp.asarray(v, jnp.bfloat16) if n in floats else jnp.asarray(v))
        for n, v in k.items()}
  got = pref.PREFERENCE_LOSSES[name](**kb, **hp)
  assert got.dtype == jnp.float32
  rounded = {n: np.asarray(v, np.float32) for n, v in kb.items()}
  np.testing.assert_allclose(got, _np_ref(name, rounded, hp), rtol=1e-4,
                             atol=1e-4)


@pytest.mark.parametrize('name', SPEC_NAMES)
def test_extreme_inputs_finite_with_finite_grads(name):
  k, floats, hp = _inputs(name, 4)
  signs = np.array([1, -1, 1, -1, 1, -1], np.float32)
  for i, n in enumerate(floats):
    s = np.roll(signs, i)
    k[n] = 1e4 * (s[:, None] * np.ones((1, J)) if k[n].ndim == 2 else s)
    k[n] = k[n].astype(np.float32)
  args = {n: jnp.asarray(v) for n, v in k.items()}
  fn = pref.PREFERENCE_LOSSES[name]
  loss = fn(**args, **hp)
  grads = jax.grad(lambda a: fn(**a, **{n: args[n] for n in args
                                        if n not in floats}, **hp).sum())(
                                            {n: args[n] for n in floats})
  assert np.isfinite(np.asarray(loss)).all()
  for g in grads.values():
    assert np.isfinite(np.asarray(g)).all()


@pytest.mark.parametrize('name', SPEC_NAMES)
def test_jit_equals_eager(name):
  k, _, hp = _inputs(name, 5)
  fn = pref.PREFERENCE_LOSSES[name]
  args = {n: jnp.asarray(v) for n, v in k.items()}
  static = {h: v for h, v in hp.items() if isinstance(v, (bool, str))}
  traced = {h: v for h, v in hp.items() if h not in static}
  jitted = jax.jit(lambda a, t: fn(**a, **t, **static))(args, traced)
  np.testing.assert_allclose(jitted, fn(**args, **hp), rtol=1e-6, atol=1e-6)


def test_docstring_examples():
  for mod in (pref, _preference_dpo, _preference_more):
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0, mod.__name__


@pytest.mark.parametrize('name', [n for n in SPEC_NAMES
                                  if 'len_w' in _SIGNATURES[n][1]])
def test_empty_rows_stay_finite(name):
  k, floats, hp = _inputs(name, 6)
  k = {n: np.zeros_like(v) for n, v in k.items()}  # fully masked pairs.
  args = {n: jnp.asarray(v) for n, v in k.items()}
  fn = pref.PREFERENCE_LOSSES[name]
  grads = jax.grad(lambda a: fn(**a, **hp).sum())(args)
  assert np.isfinite(np.asarray(fn(**args, **hp))).all()
  for g in grads.values():
    assert np.isfinite(np.asarray(g)).all()
