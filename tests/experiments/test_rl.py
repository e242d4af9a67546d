"""Online RL through the runner: every estimator preset, resume, bad grouping."""

import json

import numpy as np
import pytest

from configs import reward_model as reward_model_config
from configs import rl as rl_config
from experiments import builders
from experiments import loop
from experiments import phases
from experiments import report
from postrain import train

# No evaluation (it is tested in test_run): each run compiles less.
SHORT = {'total_steps': 2, 'log_every': 1, 'eval_every': 2,
         'eval.num_prompts': 0, 'eval.pass_prompts': 0, 'ckpt.every': 1}


def _config(algo, fast, **overrides):
  return builders.override(rl_config.get_config(algo),
                           {**fast, **SHORT, **overrides}, skip_missing=True)


@pytest.mark.parametrize('algo', [
    'ppo', 'topr',  # value head + GAE; rewards without advantages
    *(pytest.param(a, marks=pytest.mark.slow)
      for a in ('rloo', 'w_reinforce', 'nft', 'dr_grpo', 'gspo',
                'reinforce'))])
def test_estimator_presets_run(algo, fast, tmp_path):
  summary = loop.run(_config(algo, fast), str(tmp_path / algo))
  assert summary['steps'] == 2 and np.isfinite(summary['train_loss'])
  rows = [r for r in train.read_metrics(str(tmp_path / algo)) if 'loss' in r]
  assert {'reward/mean', 'zero_variance_groups', 'entropy',
          'sampler_learner_abs_diff', 'time/generate_s',
          'time/update_s'} <= set(rows[-1])
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


@pytest.mark.slow
def test_grpo_raises_sampled_accuracy_of_an_sft_base(tmp_path):
  """The README's measurement: SFT base (200 steps), then tiny GRPO."""
  from configs import sft as sft_config  # pylint: disable=g-import-not-at-top
  base = str(tmp_path / 'sft')
  config = sft_config.get_config('tiny')
  config.unlock()
  config.update(total_steps=200, eval_every=200)
  config.eval.num_prompts = 0
  config.lock()
  loop.run(config, base)
  config = rl_config.get_config('grpo')
  config.unlock()
  config.init_from = base
  config.eval.update(num_prompts=0, pass_prompts=100)
  config.lock()
  summary = loop.run(config, str(tmp_path / 'grpo'))
  assert summary['after/pass@1'] > summary['before/pass@1']


def test_reward_model_scores_rl_samples(fast, tmp_path):
  # A reward-model run (on the synthetic preference task) with the RL run's
  # architecture and tokenizer, then GRPO with `correct:1,rm:0.5`.
  model = {'model.max_seq_len': 64}
  rm_config = builders.override(
      reward_model_config.get_config('tiny'),
      {**fast, **model, 'total_steps': 2, 'eval_every': 2, 'ckpt.every': 2},
      skip_missing=True)
  rm_dir = str(tmp_path / 'rm')
  loop.run(rm_config, rm_dir)
  summary = loop.run(_config('grpo', fast, **model, **{
      'rl.rewards': 'correct:1,rm:0.5', 'rl.reward_model': rm_dir}),
                     str(tmp_path / 'rl'))
  assert np.isfinite(summary['train_loss'])
  for row in [r for r in train.read_metrics(str(tmp_path / 'rl'))
              if 'loss' in r]:
    assert row['reward/rm'] != 0.0
    np.testing.assert_allclose(
        row['reward/mean'], row['reward/correct'] + 0.5 * row['reward/rm'],
        rtol=1e-4, atol=1e-6)


def test_reward_model_must_be_named_in_rewards():
  with pytest.raises(ValueError, match='rl.reward_model'):
    phases.rl.reward_fns('rm:1', 'arithmetic')
  with pytest.raises(ValueError, match='rm:WEIGHT'):
    phases.rl.reward_fns('correct:1', 'arithmetic', reward_model=object())


def test_estimator_table_averages_seeds(tmp_path):
  for seed, (before, after, acc) in enumerate([(0.4, 0.5, (0.2, 0.6)),
                                               (0.4, 0.7, (0.4, 0.8))]):
    wd = tmp_path / 'grpo' / f'seed{seed}'
    wd.mkdir(parents=True)
    (wd / 'summary.json').write_text(json.dumps({
        'before/accuracy': before, 'after/accuracy': after,
        'after/pass@1': after, 'after/pass@8': 0.9}))
    rows = [{'step': s, 'loss': 0.0, 'accuracy': a, 'time/generate_s': 2.0,
             'time/update_s': 1.0 + seed}
            for s, a in zip(range(1, 21), [acc[0]] * 10 + [acc[1]] * 10)]
    (wd / 'metrics.jsonl').write_text(
        '\n'.join(json.dumps(r) for r in rows) + '\n')
  line = report.estimator_table(str(tmp_path), ['grpo'], 2).splitlines()[-1]
  cells = [c.strip() for c in line.strip('|').split('|')]
  assert cells == ['grpo', '2', '0.400 ± 0.000', '0.600 ± 0.100',
                   '0.600 ± 0.100', '0.900 ± 0.000',
                   '0.300 ± 0.100 → 0.700 ± 0.100', '2.000 ± 0.000',
                   '1.500 ± 0.500']
