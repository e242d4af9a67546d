"""Rollout assembly, reward scoring and pass@k against hand-made cases."""

import itertools

import jax
import numpy as np
import pytest

from postrain import data
from postrain import models
from postrain import recipes


def _rollout(**kw):
  base = dict(
      prompts=np.array([[7, 8, 0], [9, 0, 0]], np.int32),
      prompt_lengths=np.array([2, 1], np.int32),
      completions=np.array([[4, 5, 2, 0], [6, 2, 0, 0]], np.int32),
      completion_lengths=np.array([3, 2], np.int32),
      logprobs=np.array([[-.1, -.2, -.3, 0], [-.4, -.5, 0, 0]], np.float32),
      done=np.array([True, True]), texts=['a', 'b'], records=[{}, {}])
  base.update(kw)
  return recipes.Rollout(**base)


def test_assemble_places_prompt_completion_and_sampler_logprobs():
  b = recipes.assemble(_rollout(), pad_id=0)
  # Row 0: 7 8 | 4 5 2, row 1: 9 | 6 2; width P + N = 7, so T = 6.
  np.testing.assert_array_equal(b['inputs'], [[7, 8, 4, 5, 2, 0],
                                              [9, 6, 2, 0, 0, 0]])
  np.testing.assert_array_equal(b['targets'], [[8, 4, 5, 2, 0, 0],
                                               [6, 2, 0, 0, 0, 0]])
  np.testing.assert_array_equal(b['loss_mask'], [[0, 1, 1, 1, 0, 0],
                                                 [1, 1, 0, 0, 0, 0]])
  np.testing.assert_array_equal(b['segment_ids'], [[1, 1, 1, 1, 1, 0],
                                                   [1, 1, 1, 0, 0, 0]])
  np.testing.assert_allclose(b['behaviour_logp'],
                             [[0, -.1, -.2, -.3, 0, 0],
                              [-.4, -.5, 0, 0, 0, 0]])


def test_sampler_logprobs_equal_the_learner_forward_on_the_assembled_batch():
  cfg = models.TransformerConfig.preset('tiny').replace(
      vocab_size=data.CharTokenizer().vocab_size, num_layers=1)
  graphdef, params = models.random_state(cfg, seed=1, weight_scale=2.0)
  tok = data.CharTokenizer()
  out = recipes.rollout(graphdef, params, tok, ['Q: 1+2\nA:', 'Q: 3\nA:'],
                        [{}, {}], jax.random.key(0), group_size=3,
                        max_prompt_len=16, max_new_tokens=6)
  assert out.completions.shape == (6, 6) and len(out.records) == 6
  batch = recipes.assemble(out, pad_id=tok.pad_id)
  fwd = recipes.rl.forward(graphdef, params, batch)
  m = batch['loss_mask'] > 0
  np.testing.assert_allclose(np.asarray(fwd['logp'])[m],
                             batch['behaviour_logp'][m], atol=2e-5)


def test_score_weights_components_and_counts_raising_verifiers():
  def boom(text, record):
    if text == 'bad':
      raise ValueError('unparseable')
    return 1.0
  fns = {'a': (lambda t, r: float(r['ok']), 2.0), 'b': (boom, 0.5)}
  total, parts, errors = recipes.score_completions(['x', 'bad'], [{'ok': 1}, {'ok': 0}],
                                       fns)
  np.testing.assert_allclose(total, [2.5, 0.0])
  np.testing.assert_allclose(parts['b'], [1.0, 0.0])
  assert errors == 1
  with pytest.raises(ValueError):
    recipes.score_completions(['x'], [{}], {})


@pytest.mark.parametrize('n,c,k', [(5, 0, 1), (5, 2, 1), (5, 2, 3),
                                   (6, 5, 2), (4, 4, 4), (7, 3, 5)])
def test_pass_at_k_equals_enumeration_over_subsets(n, c, k):
  bits = [1] * c + [0] * (n - c)
  subsets = list(itertools.combinations(bits, k))
  expected = np.mean([any(s) for s in subsets])
  assert recipes.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
  with pytest.raises(ValueError):
    recipes.pass_at_k(n, c, n + 1)
