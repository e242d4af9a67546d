"""DPO and reward-model phases through the runner."""

import json
import os

import numpy as np
import pytest

from configs import dpo as dpo_config
from configs import reward_model as rm_config
from experiments import builders
from experiments import loop
from experiments.phases import dpo as dpo_phase
from postrain import train

# Cheap runs: no π_ref pretraining, no sampled or enumerated evaluation.
SHORT = {'total_steps': 2, 'log_every': 1, 'eval_every': 100,
         'ckpt.every': 1, 'dpo.ref_pretrain_steps': 0, 'data.num_test': 16,
         'eval.num_pairs': 16, 'eval.num_samples': 0, 'eval.exact': False,
         'dpo.prompts_per_iteration': 16, 'dpo.samples_per_prompt': 4}


def _config(module, arg, fast, **overrides):
  return builders.override(module.get_config(arg),
                           {**fast, **SHORT, **overrides}, skip_missing=True)


def _train_rows(workdir):
  return [r for r in train.read_metrics(str(workdir)) if 'loss' in r]


def test_precomputed_reference_run_equals_live(fast, tmp_path):
  runs = {}
  for ref in ('precomputed', 'live'):
    loop.run(_config(dpo_config, 'tiny', fast, **{'dpo.reference': ref}),
             str(tmp_path / ref))
    runs[ref] = _train_rows(tmp_path / ref)
  assert os.path.exists(tmp_path / 'precomputed' / 'reference_logps.npz')
  for key in ('loss', 'rewards/margin', 'logps/chosen'):
    np.testing.assert_allclose([r[key] for r in runs['precomputed']],
                               [r[key] for r in runs['live']], rtol=1e-4,
                               atol=1e-6, err_msg=key)
  # Step 1 starts at the reference: every pair's loss is log 2.
  np.testing.assert_allclose(runs['live'][0]['loss'], np.log(2), rtol=1e-5)


def test_reference_free_variant_keeps_no_reference(fast, tmp_path):
  summary = loop.run(_config(dpo_config, 'loss=simpo', fast),
                     str(tmp_path / 'simpo'))
  assert np.isfinite(summary['train_loss'])
  assert 'after/preference_accuracy' in summary
  with pytest.raises(ValueError, match="reference='none'"):
    loop.run(_config(dpo_config, 'loss=simpo', fast,
                     **{'dpo.reference': 'live'}), str(tmp_path / 'bad'))


def test_online_iterations_resume_exactly(fast, tmp_path):
  """1 iteration, then extended to 2, equals 2 iterations straight."""
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  # A random LM samples no valid response (all tie at invalid_reward).
  pretrain = {'dpo.ref_pretrain_steps': 100}
  loop.run(_config(dpo_config, 'tiny,online', fast, **pretrain),
           str(straight))
  loop.run(_config(dpo_config, 'tiny,online', fast, total_steps=1,
                   **pretrain), str(resumed))
  loop.run(_config(dpo_config, 'tiny,online', fast, **pretrain),
           str(resumed))
  pick = lambda rows: [(r['step'], r['reward/mean'], r['pairs_kept'],
                        r['loss']) for r in rows]
  a, b = pick(_train_rows(straight)), pick(_train_rows(resumed))
  assert a == b and len(a) == 2
  assert all(0 < kept <= 1 for _, _, kept, _ in a)


@pytest.mark.slow
def test_reward_model_run_feeds_online_dpo(fast, tmp_path):
  rm_dir = str(tmp_path / 'rm')
  summary = loop.run(_config(rm_config, 'tiny', fast), rm_dir)
  assert np.isfinite(summary['after/loss'])
  summary = loop.run(_config(dpo_config, 'tiny,online', fast, total_steps=1,
                             **{'dpo.reward': rm_dir,
                                'dpo.ref_pretrain_steps': 100,
                                'eval.num_samples': 8}),
                     str(tmp_path / 'dpo'))
  assert np.isfinite(summary['train_loss'])
  assert np.isfinite(summary['after/reward'])  # scored by the RM


def _reward_gain(fast, tmp_path, steps):
  config = _config(dpo_config, 'tiny', fast, total_steps=steps,
                   eval_every=steps, **{
                       'dpo.ref_pretrain_steps': 400, 'log_every': 10,
                       'eval.exact': True,
                       'ckpt.every': steps, 'eval.num_samples': 256,
                       'eval.num_pairs': 64, 'data.num_test': 64,
                       'data.num_train': 4096, 'data.batch_size': 32,
                       'data.max_len': 16, 'model.embed_dim': 64,
                       'model.hidden_dim': 256, 'model.num_layers': 2,
                       'model.num_heads': 4, 'model.num_kv_heads': 4})
  return loop.run(config, str(tmp_path / 'dpo'))


@pytest.mark.slow
def test_tiny_lm_dpo_raises_the_known_reward(fast, tmp_path):
  s = _reward_gain(fast, tmp_path, steps=40)
  print({k: v for k, v in s.items() if 'reward' in k or 'kl' in k})
  assert s['after/reward_exact'] > s['before/reward_exact'] + 0.5
  assert s['after/reward'] > s['before/reward'] + 0.5  # of 256 samples
  assert s['after/kl_star'] < s['before/kl_star'] - 1.0


def test_lora_with_reference_pretraining_is_refused(fast):
  config = _config(dpo_config, 'tiny', fast, **{'lora.rank': 4,
                                                'dpo.ref_pretrain_steps': 10})
  with pytest.raises(ValueError, match='lora.rank=0'):
    dpo_phase._check(config)


def test_lora_dpo_trains_adapters_against_the_frozen_base(fast, tmp_path):
  summary = loop.run(_config(dpo_config, 'tiny', fast, **{
      'lora.rank': 4, 'dpo.reference': 'live'}), str(tmp_path / 'dpo'))
  assert summary['updates'] == 2 and np.isfinite(summary['train_loss'])
  # The checkpoint's trained params are the adapters alone.
  meta = tmp_path / 'dpo' / 'checkpoints' / '2' / 'params' / '_METADATA'
  paths = json.loads(meta.read_text())['tree_metadata']
  assert paths and all('lora' in p for p in paths)
