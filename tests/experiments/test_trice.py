"""TRICE and the rejection-sampling recipes through the runner; resume."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import builders
from experiments import loop
from experiments.phases import rejection
from experiments.phases import trice
from postrain import sharding
from postrain import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SMALL = {
    'total_steps': 3, 'log_every': 1, 'eval_every': 100, 'ckpt.every': 1,
    'ckpt.use_async': False, 'model.num_layers': 1, 'model.embed_dim': 32,
    'model.hidden_dim': 64, 'model.num_heads': 2, 'model.num_kv_heads': 1,
    'model.head_dim': 16, 'data.num_train': 24, 'data.num_test': 8,
    'eval.num_prompts': 4, 'eval.batch_size': 4, 'eval.max_new_tokens': 6,
    'eval.vote_prompts': 2, 'eval.vote_samples': 2,
    'trice.batch_size': 8, 'trice.init_batch_size': 16,
    'trice.max_new_tokens': 6, 'trice.variance_every': 1,
    'trice.variance_groups': 2,
    'rs.samples': 2, 'rs.generate_batch': 8, 'rs.batch_size': 8,
    'rs.max_new_tokens': 6, 'rs.iterations': 2,
    'rs.questions_per_iteration': 8,
}


def _config(spec, **overrides):
  module, arg = builders.load_config_module(f'{ROOT}/configs/{spec}')
  return builders.override(module.get_config(arg), {**SMALL, **overrides},
                           skip_missing=True)


@pytest.fixture(autouse=True)
def coin_verifier(monkeypatch):
  """A random model never answers right; this verifier accepts about half
  of the samples (by text), so chains move and rejection sampling keeps."""
  real = builders.verifier
  monkeypatch.setattr(builders, 'verifier', lambda task: (
      (lambda text, r: sum(map(ord, text)) % 2 == 0) if task == 'arithmetic'
      else real(task)))


def _checkpoint(workdir, step):
  path = os.path.join(workdir, 'checkpoints', str(step))
  return ocp.tree.to_flat_dict(
      {item: ocp.PyTreeCheckpointer().restore(os.path.join(path, item))
       for item in ('params', 'train')})


def test_resumed_run_continues_the_same_chains(tmp_path):
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  loop.run(_config('trice.py:tiny'), straight)
  loop.run(_config('trice.py:tiny', total_steps=2), resumed)
  loop.run(_config('trice.py:tiny'), resumed)  # extended: resumes at 2
  a, b = _checkpoint(straight, 3), _checkpoint(resumed, 3)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))
  memory = {k[-1]: v for k, v in a.items() if 'memory' in k}
  assert memory['tokens'].any()  # the hinted initial samples are there
  assert 0 < memory['correct'].mean() < 1  # and chains have moved
  assert not memory['hinted'].all()
  rows = lambda wd: [(r['step'], r['accept_rate'], r['memory_acc'],
                      r['loss']) for r in train.read_metrics(wd)
                     if 'loss' in r]
  assert rows(straight) == rows(resumed)
  last = [r for r in train.read_metrics(straight) if 'loss' in r][-1]
  assert {'beta_mean', 'grad_var/cv', 'grad_var/basic', 'hinted_frac',
          'valid_frac'} <= set(last)
  # One hinted initialisation, at the first step only.
  assert sum('init/memory_acc' in r for r in
             train.read_metrics(resumed)) == 1


def test_subsampled_basic_trice_runs(tmp_path):
  summary = loop.run(
      _config('trice.py:tiny,cv=false', **{'trice.num_samples': 8,
                                           'total_steps': 2}),
      str(tmp_path / 'run'))
  assert summary['steps'] == 2 and np.isfinite(summary['train_loss'])
  rows = [r for r in train.read_metrics(str(tmp_path / 'run')) if 'loss' in r]
  assert all(r['beta_mean'] == 0 for r in rows)  # basic estimator: β ≡ 0


@pytest.mark.parametrize('spec', ['star.py:tiny', 'rft.py:rest_em,tiny',
                                  'rft.py:raft,tiny'])
def test_rejection_recipes_restart_and_keep(spec, tmp_path):
  wd = str(tmp_path / 'run')
  config = _config(spec, total_steps=5, **{'rs.max_per_question': 1})
  summary = loop.run(config, wd)
  assert summary['steps'] == 5
  rows = train.read_metrics(wd)
  gen = [r for r in rows if 'rs/kept' in r]
  first = rejection.iteration_steps(5, config.rs.step_growth, 2)[0]
  assert [r['step'] for r in gen] == [1, 1 + first]  # one per iteration
  assert all(r['rs/kept'] > 0 for r in gen)
  if 'raft' not in spec:  # the per-question cap (RAFT keeps one anyway)
    assert all(r['rs/kept_per_question'] <= 1 for r in gen)


def test_gsm8k_config_runs_on_local_jsonl(tmp_path):
  root = tmp_path / 'gsm8k'
  root.mkdir()
  for split, n in (('train', 8), ('test', 4)):
    with open(root / f'{split}.jsonl', 'w') as f:
      for i in range(n):
        f.write(json.dumps({'question': f'What is {i} plus 2?',
                            'answer': f'{i} + 2 = <<{i}+2={i + 2}>>{i + 2}\n'
                                      f'#### {i + 2}'}) + '\n')
  config = _config('trice.py:gsm8k', **{
      'data.jsonl_path': str(root), 'data.max_len': 32, 'total_steps': 1,
      'model.max_seq_len': 64})
  summary = loop.run(config, str(tmp_path / 'run'))
  assert summary['steps'] == 1 and 'after/accuracy' in summary


def test_memory_is_sharded_by_example_when_devices_divide_it():
  mesh = sharding.make_mesh([('data', -1), ('fsdp', 1), ('tensor', 1)])
  ways = jax.device_count()
  split = trice.memory_shardings(mesh, 3 * ways)
  assert split.tokens.spec[0] == ('data', 'fsdp')
  assert split.correct.shard_shape((3 * ways,)) == (3,)
  whole = trice.memory_shardings(mesh, 3 * ways + 1)
  assert whole.tokens.is_fully_replicated and whole.hinted.is_fully_replicated
