"""Online RL through the runner: every estimator preset, resume, bad grouping."""

import numpy as np
import pytest

from configs import rl as rl_config
from experiments import loop
from experiments import phases
from postrain import train

SHORT = {'total_steps': 2, 'log_every': 1, 'eval_every': 2,
         'eval.num_prompts': 2, 'eval.pass_prompts': 1, 'ckpt.every': 1}


def _config(algo, fast, **overrides):
  config = rl_config.get_config(algo)
  config.unlock()
  for key, value in {**fast, **SHORT, **overrides}.items():
    *parents, leaf = key.split('.')
    node = config
    for part in parents:
      node = node.get(part, {})
    if leaf in node:
      node[leaf] = value
  config.lock()
  return config


@pytest.mark.parametrize('algo', ['ppo', 'rloo', 'topr', 'w_reinforce', 'nft'])
def test_estimator_presets_run(algo, fast, tmp_path):
  summary = loop.run(_config(algo, fast), str(tmp_path / algo))
  assert summary['steps'] == 2 and np.isfinite(summary['train_loss'])
  rows = [r for r in train.read_metrics(str(tmp_path / algo)) if 'loss' in r]
  assert {'reward/mean', 'zero_variance_groups', 'entropy',
          'sampler_learner_abs_diff'} <= set(rows[-1])
  # Sampler and learner compute the same log-probs here (float32, CPU).
  assert rows[-1]['sampler_learner_abs_diff'] < 1e-4
  if algo == 'ppo':
    assert 'value_loss' in rows[-1] and 'kl_ref' in rows[-1]


def test_extended_run_equals_one_long_run(fast, tmp_path):
  """Resume: 2 steps, then extended to 3, equals 3 steps straight."""
  straight = tmp_path / 'straight'
  loop.run(_config('grpo', fast, total_steps=3), str(straight))
  resumed = tmp_path / 'resumed'
  loop.run(_config('grpo', fast, total_steps=2), str(resumed))
  loop.run(_config('grpo', fast, total_steps=3), str(resumed))
  a = train.read_metrics(str(straight))
  b = train.read_metrics(str(resumed))
  pick = lambda rows: [(r['step'], r['reward/mean'], r['loss'])
                       for r in rows if 'loss' in r]
  assert pick(a) == pick(b)


@pytest.mark.parametrize('overrides,match', [
    ({'rl.num_minibatches': 3}, 'does not divide'),
    ({'rl.group_size': 1, 'rl.prompts_per_step': 8}, 'group_size >= 2'),
    ({'rl.advantage': ''}, 'needs an advantage'),
    ({'rl.value_coef': 0.1}, 'go together'),
])
def test_wrong_grouping_fails_before_training(fast, tmp_path, overrides,
                                              match):
  with pytest.raises(ValueError, match=match):
    loop.run(_config('grpo', fast, **overrides), str(tmp_path / 'bad'))


def test_unknown_reward_names_the_valid_ones():
  with pytest.raises(ValueError, match='correct'):
    phases.rl.reward_fns('correct:1,typo:2')
