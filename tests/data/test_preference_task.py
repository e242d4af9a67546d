"""The synthetic preference task: closed-form reward, bigram, BT labels."""

import numpy as np
import pytest

from postrain import data


def test_reward_is_the_closed_form_of_the_spec():
  task = data.PreferenceTask()
  assert task.reward('dddd') == 4.0
  assert task.reward('hdad') == 2.0 - 0.5
  assert task.reward('abce') == 0.0
  assert task.reward('ddd') == task.invalid_reward  # wrong length
  assert task.reward('ddxd') == task.invalid_reward  # not in the alphabet
  r = task.rewards()
  assert len(r) == 8 ** 4 and task.invalid_reward < r.min() == -0.5


def test_bigram_log_probs_normalise_and_match_its_samples():
  task = data.PreferenceTask(seed=3)
  logp = task.bigram_log_probs()
  np.testing.assert_allclose(np.exp(logp).sum(), 1.0, rtol=1e-12)
  samples = task.sample(100_000, np.random.default_rng(0))
  index = {y: i for i, y in enumerate(task.responses())}
  freq = np.bincount([index[y] for y in samples], minlength=len(logp)) / 1e5
  top = np.argsort(logp)[-20:]  # frequent strings: tight binomial error
  p = np.exp(logp[top])
  assert np.all(np.abs(freq[top] - p) < 4 * np.sqrt(p / 1e5))


def test_pairs_are_bradley_terry_labelled_and_deterministic():
  task = data.PreferenceTask()
  pairs = task.pairs(4000)
  assert pairs == task.pairs(4000) and pairs != task.pairs(4000, 'test')
  assert all(p['chosen'] != p['rejected'] for p in pairs)
  for p in pairs[:50]:
    assert p['reward_chosen'] == task.reward(p['chosen'])
    np.testing.assert_allclose(
        p['alpha'], 1 / (1 + np.exp(p['reward_rejected'] - p['reward_chosen'])))
  # Among pairs whose rewards differ by exactly 1, the better side wins
  # with probability σ(1) = 0.731.
  gap = [p['reward_chosen'] - p['reward_rejected'] for p in pairs]
  wins = [g > 0 for g in gap if abs(g) == 1]
  assert abs(np.mean(wins) - 1 / (1 + np.exp(-1))) < 4 * np.sqrt(
      0.2 / len(wins))


def test_tilted_optimum_and_kl():
  ref = np.log(np.array([0.5, 0.25, 0.25]))
  star = data.tilted_log_probs(ref, np.array([0.0, 1.0, 0.0]), beta=0.5)
  expected = np.array([0.5, 0.25 * np.e ** 2, 0.25])
  np.testing.assert_allclose(np.exp(star), expected / expected.sum())
  assert data.kl_divergence(star, star) == 0.0
  p, q = np.log([0.5, 0.5]), np.log([0.9, 0.1])
  np.testing.assert_allclose(data.kl_divergence(p, q),
                             0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(5))


def test_pair_fields_name_what_is_missing():
  record = {'json': '{"prompt": "p", "chosen": "a", "rejected": "b"}'}
  assert data.pair_fields(record) == ('p', 'a', 'b')
  with pytest.raises(KeyError, match='better'):
    data.pair_fields({'prompt': 'p', 'chosen': 'a', 'rejected': 'b'},
                     chosen_field='better')
