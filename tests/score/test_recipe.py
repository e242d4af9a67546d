"""The score recipe and its harness at tiny size (configs/score.py)."""

import json
import os
import signal
import threading
import time

from flax import nnx
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import score as score_config
from experiments import builders
from experiments import loop
from postrain import losses
from postrain import recipes
from postrain import score

FAST = {
    'total_steps': 12, 'log_every': 3, 'eval_every': 6,
    'data.num_train': 200, 'data.num_test': 64, 'data.batch_size': 32,
    'model.hidden': 32, 'model.depth': 1, 'model.channels': 8,
    'eval.num_draws': 2, 'eval.r2_levels': 3, 'eval.r2_points': 64,
    'eval.num_samples': 64, 'sampler.num_steps': 4, 'ckpt.every': 4,
    'ckpt.use_async': False,
}


def _config(arg='tiny', **overrides):
  return builders.override(score_config.get_config(arg),
                           {**FAST, **overrides})


@pytest.mark.parametrize('arg,extra', [
    ('tiny', {}),
    ('digits', {'data.num_train': 100, 'data.num_test': 32}),
    pytest.param('tiny', {
        'diffusion.process': 'vp', 'diffusion.parametrization': 'v',
        'diffusion.precondition': False, 'loss.weighting': 'min_snr',
        'sampler.name': 'euler_maruyama'}, marks=pytest.mark.slow),
])
def test_score_config_runs_at_tiny_size(arg, extra, tmp_path):
  summary = loop.run(_config(arg, **extra), str(tmp_path / 'run'))
  assert summary['recipe'] == 'score' and summary['steps'] == 12
  assert np.isfinite(summary['train_loss'])
  assert np.isfinite(summary['after/dsm']) and summary['after/nfe'] > 0
  for name in ('config.json', 'metrics.jsonl', 'summary.json', 'summary.md',
               'metrics.png', 'r2.png', 'r2.json', 'samples.png'):
    assert os.path.exists(tmp_path / 'run' / name), name
  assert os.path.isdir(tmp_path / 'run' / 'checkpoints' / '12')
  assert os.listdir(tmp_path / 'run' / 'best')


def _params(workdir, step):
  return ocp.PyTreeCheckpointer().restore(
      os.path.join(workdir, 'checkpoints', str(step), 'params'))


def test_extended_run_equals_uninterrupted(tmp_path):
  kw = {'optim.schedule': 'constant', 'optim.warmup_steps': 0,
        'eval_every': 100}
  loop.run(_config(total_steps=8, **kw), str(tmp_path / 'a'))
  loop.run(_config(total_steps=16, **kw), str(tmp_path / 'a'))
  loop.run(_config(total_steps=16, **kw), str(tmp_path / 'b'))
  a = ocp.tree.to_flat_dict(_params(tmp_path / 'a', 16))
  b = ocp.tree.to_flat_dict(_params(tmp_path / 'b', 16))
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))


def test_sigterm_saves_and_resume_equals_uninterrupted(tmp_path):
  kw = {'total_steps': 60, 'optim.schedule': 'constant',
        'optim.warmup_steps': 0, 'eval_every': 1000, 'log_every': 4}
  run = str(tmp_path / 'a')
  first = os.path.join(run, 'checkpoints', '4')

  def signal_after_first_checkpoint():
    while not os.path.isdir(first):
      time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)  # handled on the main thread

  thread = threading.Thread(target=signal_after_first_checkpoint)
  thread.start()
  with pytest.raises(SystemExit, match='interrupted at step'):
    loop.run(_config(**kw), run)
  thread.join()
  saved = max(int(d) for d in os.listdir(os.path.join(run, 'checkpoints')))
  assert 4 <= saved < 60  # the signal's step was saved before exiting
  loop.run(_config(**kw), run)
  loop.run(_config(**kw), str(tmp_path / 'b'))
  a = ocp.tree.to_flat_dict(_params(tmp_path / 'a', 60))
  b = ocp.tree.to_flat_dict(_params(tmp_path / 'b', 60))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))


def test_objective_is_the_dsm_kernel_on_the_model_prediction():
  diff = recipes.score.Diffusion(process='edm', sigma_data=0.7)
  model = score.ScoreMLP(2, hidden=16, depth=1, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  x0 = jax.random.normal(jax.random.key(1), (16, 2))
  rng = jax.random.key(2)
  loss, metrics = recipes.score.make_objective(graphdef, diff)(
      params, {'x': x0}, rng)
  k_t, k_e = jax.random.split(rng)
  t = diff.sample_t(k_t, 16)
  eps = jax.random.normal(k_e, x0.shape)
  x_t = x0 + t[:, None] * eps
  c = losses.edm_precond(t, sigma_data=0.7)
  f = model(c['c_in'][:, None] * x_t, c['c_noise'])
  want = losses.edm_loss(f, x0, x_t, t, sigma_data=0.7).mean()
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert metrics['tokens'] == 16


def test_diffusion_rejects_bad_combinations():
  with pytest.raises(ValueError, match="parametrization='x0'"):
    recipes.score.Diffusion(parametrization='eps', precondition=True)
  with pytest.raises(ValueError, match="'vp' or 'ou'"):
    recipes.score.Diffusion(process='ve', parametrization='v',
                            precondition=False)
  with pytest.raises(ValueError, match="process='vq'"):
    recipes.score.Diffusion(process='vq')


def test_early_stopping_keeps_the_argmin_and_stops(tmp_path):
  # lr so large that held-out DSM gets worse: stop after `patience` evals
  # and keep the step-0 parameters as the best.
  config = _config(**{'optim.lr': 3.0, 'optim.grad_clip': 0.0,
                      'optim.warmup_steps': 0, 'optim.schedule': 'constant',
                      'eval_every': 2, 'early_stop.patience': 2})
  summary = loop.run(config, str(tmp_path / 'run'))
  assert summary['early_stopped'] is True and summary['steps'] < 12
  with open(tmp_path / 'run' / 'metrics.jsonl') as f:
    evals = [r for r in map(json.loads, f)
             if 'eval/dsm' in r and r['step'] < summary['steps']]
  best = min(evals, key=lambda r: r['eval/dsm'])
  assert summary['best_step'] == best['step']
  assert os.listdir(tmp_path / 'run' / 'best') == [str(best['step'])]
