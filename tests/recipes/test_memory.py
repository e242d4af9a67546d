"""Tests for TRICE's rationale memory (spec: rationale.md §1.2–1.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain.recipes import memory as mem

N, T = 16, 5


def _hinted(seed=0):
  rng = np.random.default_rng(seed)
  return mem.init_memory(N, T, tokens=rng.integers(1, 50, (N, T)),
                         length=rng.integers(1, T + 1, N),
                         correct=rng.random(N) > .4)


def _proposals(rng, m):
  return (rng.integers(50, 99, (m, T)), rng.integers(1, T + 1, m),
          rng.random(m) > .5)


def test_init_memory():
  empty = mem.init_memory(N, T)
  assert empty.tokens.shape == (N, T) and empty.tokens.dtype == jnp.int32
  assert not np.any(empty.correct) and not np.any(empty.hinted)
  assert np.all(np.asarray(empty.length) == 0)
  hinted = _hinted()
  assert np.all(hinted.hinted)
  stats = mem.memory_stats(hinted)
  np.testing.assert_allclose(stats['memory_acc'],
                             np.asarray(hinted.correct).mean())
  with pytest.raises(ValueError, match='together'):
    mem.init_memory(N, T, tokens=np.zeros((N, T)))
  with pytest.raises(ValueError, match='expected'):
    mem.init_memory(N, T, tokens=np.zeros((N, T + 1)), length=0,
                    correct=False)


def test_update_is_accept_if_correct():
  rng = np.random.default_rng(1)
  memory = _hinted()
  ref = {k: np.array(getattr(memory, k)) for k in
         ('tokens', 'length', 'correct', 'hinted')}
  step = jax.jit(mem.update, donate_argnums=0)
  for _ in range(6):  # a few chain steps against a numpy simulation
    idx = rng.permutation(N)[:6]
    tok, length, acc = _proposals(rng, 6)
    memory, rows = step(memory, idx, tok, length, acc)
    for j, n in enumerate(idx):
      if acc[j]:
        ref['tokens'][n], ref['length'][n] = tok[j], length[j]
        ref['correct'][n], ref['hinted'][n] = True, False
    for k, want in ref.items():
      np.testing.assert_array_equal(getattr(memory, k), want, err_msg=k)
    for k in ref:
      np.testing.assert_array_equal(getattr(rows, k),
                                    getattr(mem.gather(memory, idx), k))
  assert np.asarray(memory.hinted).sum() < N


def test_rejected_proposal_keeps_memory_and_correctness():
  memory = mem.init_memory(N, T, tokens=np.full((N, T), 7), length=3,
                           correct=np.arange(N) % 2 == 0)
  idx = np.array([0, 1, 2])
  new, rows = mem.update(memory, idx, np.ones((3, T), int), np.full(3, 5),
                         np.array([False, False, True]))
  np.testing.assert_array_equal(rows.tokens[:2], 7)
  np.testing.assert_array_equal(rows.correct, [True, False, True])
  np.testing.assert_array_equal(rows.hinted, [True, True, False])
  np.testing.assert_array_equal(new.length[:4], [3, 3, 5, 3])
  with pytest.raises(ValueError, match='pad or cut'):
    mem.update(memory, idx, np.ones((3, T + 2), int), np.full(3, 5),
               np.ones(3, bool))


def test_update_on_memory_sharded_by_example():
  devices = np.array(jax.devices()[:8])
  mesh = jax.sharding.Mesh(devices, ('data',))
  rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  memory = _hinted(3)
  sharded = jax.device_put(memory, rows)
  rng = np.random.default_rng(2)
  idx = rng.permutation(N)[:8]
  tok, length, acc = _proposals(rng, 8)
  out, _ = jax.jit(mem.update, out_shardings=(rows, None))(
      sharded, idx, tok, length, acc)
  want, _ = mem.update(memory, idx, tok, length, acc)
  assert out.tokens.sharding.is_equivalent_to(rows, 2)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)
