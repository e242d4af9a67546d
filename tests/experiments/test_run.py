"""The runner end to end: every config, resume after a kill, bad input."""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import builders
from experiments import launch
from experiments import loop
from experiments import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', '[!_]*.py')))
CONFIGS = [c for c in CONFIGS if not c.endswith(('common.py', 'score.py'))]


def _config(path, overrides):
  module, _ = builders.load_config_module(f'{path}:tiny')
  return builders.override(module.get_config('tiny'), overrides,
                           skip_missing=True)  # those of this recipe


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_every_config_runs_at_tiny_size(path, fast, tmp_path):
  summary = loop.run(_config(path, fast), str(tmp_path / 'run'))
  assert summary['steps'] == fast['total_steps']
  # Rejection sampling from a random model may keep nothing: no updates.
  assert summary['updates'] > 0 or path.endswith(('star.py', 'rft.py'))
  assert np.isfinite(summary['train_loss']) or summary['updates'] == 0
  for name in ('config.json', 'metrics.jsonl', 'summary.json', 'summary.md',
               'metrics.png'):
    assert os.path.exists(tmp_path / 'run' / name), name
  assert os.listdir(tmp_path / 'run' / 'tb')
  assert os.path.isdir(tmp_path / 'run' / 'checkpoints' / '12')


def _sft_keys(fast):
  """The FAST overrides that exist in configs/sft.py (no `rl.*`)."""
  module, _ = builders.load_config_module(f'{ROOT}/configs/sft.py:tiny')
  config = module.get_config('tiny')
  def has(key):
    node = config
    for part in key.split('.'):
      if part not in node:
        return False
      node = node[part]
    return True
  return {k: v for k, v in fast.items() if has(k)}


def _cmd(workdir, fast):
  return [sys.executable, '-m', 'experiments.run',
          f'--config={ROOT}/configs/sft.py:tiny', f'--workdir={workdir}'] + [
              f'--config.{k}={v}' for k, v in _sft_keys(fast).items()]


def _wait_for(path, proc, timeout=300):
  start = time.time()
  while not os.path.exists(path):
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    assert time.time() - start < timeout
    time.sleep(0.05)


def _final_state(workdir):
  path = os.path.join(workdir, 'checkpoints', '40')
  return {item: ocp.PyTreeCheckpointer().restore(os.path.join(path, item))
          for item in ('params', 'train')}


def test_killed_then_resumed_equals_uninterrupted(fast, tmp_path):
  fast.update({'total_steps': 40, 'eval_every': 100, 'ckpt.every': 8})
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  kw = dict(cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
  run = str(tmp_path / 'interrupted')
  # 1. SIGTERM: the run saves the current step and exits cleanly.
  proc = subprocess.Popen(_cmd(run, fast), **kw)
  _wait_for(os.path.join(run, 'checkpoints', '8', 'commit_success.txt'), proc)
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=300)[0]
  assert proc.returncode != 0 and 'interrupted at step' in out, out[-2000:]
  # 2. SIGKILL mid-run: only completed checkpoints survive.
  proc = subprocess.Popen(_cmd(run, fast), **kw)
  _wait_for(os.path.join(run, 'checkpoints', '24', 'commit_success.txt'), proc)
  proc.kill()
  proc.wait()
  # 3. Resume to the end; compare with an uninterrupted run, bit for bit.
  done = subprocess.run(_cmd(run, fast), check=False, **kw)
  assert done.returncode == 0, done.stdout[-3000:]
  ref = subprocess.run(_cmd(str(tmp_path / 'ref'), fast), check=False, **kw)
  assert ref.returncode == 0, ref.stdout[-3000:]
  a, b = _final_state(run), _final_state(str(tmp_path / 'ref'))
  flat_a = ocp.tree.to_flat_dict(a)
  flat_b = ocp.tree.to_flat_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=str(key))
  losses = lambda wd: [r['loss'] for r in map(json.loads, open(
      os.path.join(wd, 'metrics.jsonl'))) if 'loss' in r]
  assert losses(run) == losses(str(tmp_path / 'ref'))


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(fast, tmp_path):
  fast.update({'optim.lr': 1e30, 'optim.grad_clip': 0.0, 'ckpt.every': 1,
               'optim.warmup_steps': 0, 'log_every': 100})
  with pytest.raises(FloatingPointError, match=r'at step (\d+)') as err:
    loop.run(_config(f'{ROOT}/configs/sft.py', fast), str(tmp_path / 'run'))
  bad = int(err.value.args[0].split('at step ')[1].split()[0])
  saved = sorted(int(s) for s in os.listdir(tmp_path / 'run' / 'checkpoints')
                 if s.isdigit())
  assert saved and max(saved) < bad


def test_workdir_with_another_config_is_refused(fast, tmp_path):
  fast['total_steps'] = 2
  config = _config(f'{ROOT}/configs/sft.py', fast)
  loop.run(config, str(tmp_path / 'run'))
  other = _config(f'{ROOT}/configs/sft.py', dict(fast, **{'optim.lr': 0.5}))
  with pytest.raises(SystemExit, match='different config'):
    loop.run(other, str(tmp_path / 'run'))
  assert os.path.isdir(tmp_path / 'run' / 'checkpoints' / '2')


def test_unknown_override_lists_valid_keys():
  module, _ = builders.load_config_module(f'{ROOT}/configs/sft.py:tiny')
  with pytest.raises(SystemExit, match=r"has no 'lrr'.*'lr'"):
    builders.check_keys(module.get_config('tiny'), ['optim.lrr'])
  with pytest.raises(SystemExit, match="config has no 'optimizer'"):
    builders.check_keys(module.get_config('tiny'), ['optimizer.lr'])


def test_missing_jsonl_dataset_is_a_clear_error(fast, tmp_path):
  config = _config(f'{ROOT}/configs/sft.py', dict(
      fast, **{'data.task': 'jsonl',
               'data.jsonl_path': str(tmp_path / 'nowhere')}))
  with pytest.raises(Exception, match='nowhere'):
    loop.run(config, str(tmp_path / 'run'))


def test_sweep_runs_every_point_writes_table_and_skips_finished(fast,
                                                               tmp_path):
  root = tmp_path / 'sweep'
  cmd = [sys.executable, '-m', 'experiments.sweep',
         f'--config={ROOT}/configs/sft.py:tiny', f'--workdir={root}',
         '--parallel=2'] + [f'--set={k}={v}'
                           for k, v in _sft_keys(fast).items()]
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                       text=True, check=False)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  table = (root / 'results.md').read_text()
  assert len([l for l in table.splitlines() if l.startswith('| ')]) == 1 + 4
  with open(root / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and all(float(r['steps']) == 12 for r in rows)
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, check=False)
  assert '4 already finished' in again.stdout


def test_sweep_points_and_commands():
  points = sweep.points(f'{ROOT}/configs/sft.py:tiny')
  assert len(points) == 4
  names = {sweep.run_name(p) for p in points}
  assert len(names) == 4
  cmd = launch.command('configs/sft.py:tiny', '/tmp/x', points[0])
  assert any(a.startswith('--config.optim.lr=') for a in cmd)


def test_init_from_starts_from_another_runs_final_parameters(fast, tmp_path):
  fast.update({'total_steps': 4, 'eval_every': 100})
  sft = f'{ROOT}/configs/sft.py'
  base = loop.run(_config(sft, fast), str(tmp_path / 'base'))
  child = loop.run(_config(sft, dict(fast, init_from=str(tmp_path / 'base'))),
                   str(tmp_path / 'child'))
  fresh = loop.run(_config(sft, dict(fast, seed=1)), str(tmp_path / 'fresh'))
  assert child['before/loss'] == pytest.approx(base['after/loss'], rel=1e-6)
  assert fresh['before/loss'] != pytest.approx(base['after/loss'], rel=1e-2)
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    loop.run(_config(sft, dict(fast, init_from=str(tmp_path / 'nothing'))),
             str(tmp_path / 'orphan'))
