r"""The three score-model reproductions of issue 7, on the CPU in minutes.

  python -m experiments.score_repro --workdir=runs/score_repro [--only=a,b,c]
      [--scale=1.0]

(a) DSM on the 2-D Gaussian-mixture ring recovers the analytic GMM score:
    R² of the learned score per noise level.
(b) Gaussian-score findings (Wang & Vastola, arXiv:2412.09726) on the 8×8
    digits: R² of the learned score against the Gaussian, and delta-mixture
    scores per noise level, early and late in training; and teleport: the
    Heun sampler started at σ_k via the Gaussian PF-ODE, sample quality (MMD,
    sliced W2 to held-out digits) against NFE.
(c) Early stopping (Han, Razaviyayn, Xu, arXiv:2401.15604): train and
    held-out DSM on a 64-point training set; the held-out curve turns up
    while the training curve keeps falling.
Each part is a run of configs/score.py (same harness, its own workdir);
tables go to stdout and `<workdir>/repro.md`, plots beside them.
"""

import json
import os

from absl import app
from absl import flags
from flax import nnx
import jax

from configs import score as score_config
from experiments import builders
from experiments import loop_score
from experiments import report
from experiments import score_eval as se
from postrain import recipes
from postrain import score
from postrain import train

_WORKDIR = flags.DEFINE_string('workdir', 'runs/score_repro', 'Root dir.')
_ONLY = flags.DEFINE_list('only', ['a', 'b', 'c'], 'Parts to run.')
_SCALE = flags.DEFINE_float('scale', 1.0, 'Multiplies every step count.')


def _config(arg, **overrides):
  return builders.override(score_config.get_config(arg), overrides)


def _steps(n):
  return max(int(n * _SCALE.value), 10)


def _r2_table(workdir, title):
  with open(os.path.join(workdir, 'r2.json')) as f:
    r2 = json.load(f)
  rows = [dict(sigma=s, **{k: v[i] for k, v in r2['r2'].items()})
          for i, s in enumerate(r2['sigma'])]
  return f'### {title}\n\n' + report.markdown_table(
      rows, ['sigma'] + list(r2['r2'])) + '\n'


def part_a(root):
  wd = os.path.join(root, 'a_gmm')
  loop_score.run(_config('tiny', total_steps=_steps(2000)), wd)
  return _r2_table(wd, '(a) R² of the learned score, 2-D GMM ring, '
                   f'{_steps(2000)} steps')


def _params(config, workdir):
  """Final parameters and the tools of a finished digits run."""
  train_x, test_x, info = se.data(config.data, config.seed)
  diff = se.diffusion(config.diffusion, train_x)
  model = nnx.eval_shape(lambda: se.model(config.model, train_x.shape[1],
                                          config.data.name, 0))
  graphdef, abstract = nnx.split(model)
  params = train.restore_params(workdir, abstract)
  return graphdef, params, diff, train_x, test_x, info


def _teleport_rows(config, workdir):
  graphdef, params, diff, train_x, test_x, info = _params(config, workdir)
  score_fn = jax.jit(recipes.score.make_score_fn(graphdef, diff))
  sampler = se.make_sampler(score_fn, diff, config.sampler)
  n_steps, rows = config.sampler.num_steps, []
  for frac in (0.0, 0.1, 0.2, 0.3, 0.5):
    k = score.teleport_index(n_steps, frac)
    x, nfe = se.sample(sampler, params, diff, config.sampler, len(test_x),
                       jax.random.key(7), dim=train_x.shape[1],
                       t_min=config.loss.t_min, teleport_to=k,
                       gaussian=info['gaussian'])
    q = se.sample_quality(x, test_x, jax.random.key(8))
    ts = score.time_grid(diff.process, n_steps,
                         sigma_min=config.sampler.sigma_min,
                         sigma_max=config.sampler.sigma_max)
    rows.append(dict(skip_fraction=frac, skipped_steps=k,
                     sigma_start=float(ts[k]), nfe=nfe, **q))
  return rows


def part_b(root):
  out = []
  for steps in (_steps(300), _steps(3000)):
    wd = os.path.join(root, f'b_digits_{steps}')
    config = _config('digits', total_steps=steps,
                     eval_every=max(steps // 4, 1))
    loop_score.run(config, wd)
    out.append(_r2_table(wd, f'(b) digits, {steps} steps: R² of the learned '
                         'score against each reference'))
  rows = _teleport_rows(config, wd)
  out.append('### (b) teleport: Heun N=40 from σ_k via the Gaussian PF-ODE\n\n'
             + report.markdown_table(rows, list(rows[0])) + '\n')
  return '\n'.join(out)


def part_c(root):
  wd = os.path.join(root, 'c_early_stop')
  steps = _steps(6000)
  loop_score.run(_config('tiny', **{
      'data.num_train': 64, 'data.batch_size': 64, 'total_steps': steps,
      'eval_every': max(steps // 24, 1), 'optim.schedule': 'constant',
      'optim.warmup_steps': 0}), wd)
  rows = [r for r in train.read_metrics(wd) if 'eval/dsm' in r]
  rows = [dict(step=r['step'], train_dsm=r['eval/dsm_train'],
               heldout_dsm=r['eval/dsm'], r2_gmm=r['eval/r2_gmm'],
               r2_delta_mixture=r['eval/r2_delta_mixture']) for r in rows]
  _plot_curves(os.path.join(root, 'c_curves.png'), rows)
  best = min(rows, key=lambda r: r['heldout_dsm'])
  return ('### (c) 64 training points: DSM on fixed draws (train vs held-out)'
          f'\n\nbest held-out step {best["step"]}\n\n'
          + report.markdown_table(rows, list(rows[0])) + '\n')


def _plot_curves(path, rows):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5, 3.5))
  steps = [r['step'] for r in rows]
  ax.plot(steps, [r['train_dsm'] for r in rows], marker='.', label='train')
  ax.plot(steps, [r['heldout_dsm'] for r in rows], marker='.',
          label='held-out')
  ax.set_xlabel('step')
  ax.set_ylabel('DSM (fixed draws)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  root = os.path.abspath(_WORKDIR.value)
  os.makedirs(root, exist_ok=True)
  parts = {'a': part_a, 'b': part_b, 'c': part_c}
  text = '\n'.join(parts[p](root) for p in _ONLY.value)
  with open(os.path.join(root, 'repro.md'), 'w') as f:
    f.write(text)
  print(text)


if __name__ == '__main__':
  app.run(main)
