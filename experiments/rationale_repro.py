r"""Experiment E1: TRICE vs STaR vs RFT vs answer-only SFT, over seeds.

  python -m experiments.rationale_repro --size=tiny --workdir=runs/e1

Trains the noisy-rationale base model once (`configs/rationale_base.py`),
then from it: answer-only SFT (`sft_direct`), STaR, RFT, TRICE without and
with the control variate (and, with `--methods`, ReST-EM and RAFT), each
over `--seeds`. Runs are ordinary `experiments.run` workdirs (finished ones
are skipped, interrupted ones resume). Writes `results.md` (held-out greedy
and majority-vote accuracy, mean ± std over seeds) and `curves.png`
(accuracy and TRICE's gradient variance against steps).
"""

import json
import os
import time

from absl import app
from absl import flags
import numpy as np

from experiments import report
from experiments import launch
from postrain import train

_SIZE = flags.DEFINE_enum('size', 'tiny', ['tiny', 'base'], 'Config size.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/e1', 'Root of all runs.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds per method.')
_PARALLEL = flags.DEFINE_integer('parallel', 2, 'Runs at once.')
_METHODS = flags.DEFINE_list(
    'methods', ['sft_direct', 'star', 'rft', 'trice_no_cv', 'trice_cv'],
    'Methods to run; also rest_em, raft.')
_SET = flags.DEFINE_multi_string('set', [], '`key=value` for every method '
                                 'run (not the base), e.g. total_steps=30.')

# method -> config spec (`path:arg`); {size} is filled in.
METHODS = {
    'sft_direct': 'configs/rationale_base.py:direct,size={size}',
    'star': 'configs/star.py:{size}',
    'rft': 'configs/rft.py:rft,{size}',
    'rest_em': 'configs/rft.py:rest_em,{size}',
    'raft': 'configs/rft.py:raft,{size}',
    'trice_no_cv': 'configs/trice.py:{size},cv=false',
    'trice_cv': 'configs/trice.py:{size}',
}
KEYS = ('accuracy', 'accuracy_k3', 'accuracy_k4', 'vote_accuracy')


def _run_all(jobs, parallel):
  """Runs the `(command, workdir)` jobs not finished yet; fails loudly."""
  failed = launch.launch(
      [(cmd, wd) for cmd, wd in jobs
       if not os.path.exists(os.path.join(wd, 'summary.json'))], parallel)
  if failed:
    raise SystemExit(f'{len(failed)} runs failed; see {failed[0]}/log.txt')


def table(root, methods, seeds) -> str:
  """Markdown: mean ± std over seeds of the final held-out metrics."""
  rows = []
  for m in ['base'] + list(methods):
    runs = ([os.path.join(root, 'base')] if m == 'base' else
            [os.path.join(root, m, f'seed{s}') for s in range(seeds)])
    if m == 'base':  # scored on the E1 questions: a child's `before`
      summaries, prefix = _base_on_e1(root, methods), 'before'
    else:
      summaries, prefix = [], 'after'
      for wd in runs:
        with open(os.path.join(wd, 'summary.json')) as f:
          summaries.append(json.load(f))
    row = {'method': m, 'seeds': len(runs)}
    for k in KEYS:
      v = [s[f'{prefix}/{k}'] for s in summaries if f'{prefix}/{k}' in s]
      row[k] = (f'{np.mean(v):.3f} ± {np.std(v):.3f}' if v else '')
    rows.append(row)
  return report.markdown_table(rows, ['method', 'seeds', *KEYS])


def _base_on_e1(root, methods) -> list[dict]:
  """The base model's scores on the E1 questions: the `before/` metrics of
  the seed-0 run of the method that evaluates the most of them (the base's
  own summary scores its pretraining test set, 1–4 steps)."""
  found = []
  for m in methods:
    path = os.path.join(root, m, 'seed0', 'summary.json')
    if os.path.exists(path):
      with open(path) as f:
        found.append(json.load(f))
  return sorted(found, key=lambda s: -sum(k.startswith('before/')
                                          for k in s))[:1]


def plot(root, methods, seeds) -> str:
  """`curves.png`: eval accuracy vs step; TRICE gradient variance vs step."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_acc, ax_var, ax_acc_rate) = plt.subplots(1, 3, figsize=(15, 4))
  for i, m in enumerate(methods):
    for s in range(seeds):
      rows = train.read_metrics(os.path.join(root, m, f'seed{s}'))
      kw = dict(color=f'C{i}', alpha=0.8, label=m if s == 0 else None)
      pts = [(r['step'], r['eval/accuracy']) for r in rows
             if 'eval/accuracy' in r]
      ax_acc.plot(*zip(*pts), marker='o', **kw)
      for key, ax in (('grad_var/cv' if m == 'trice_cv' else
                       'grad_var/basic', ax_var), ('accept_rate',
                                                   ax_acc_rate)):
        pts = [(r['step'], r[key]) for r in rows if key in r]
        if pts:
          ax.plot(*zip(*pts), **kw)
  ax_acc.set(xlabel='step', ylabel='held-out greedy accuracy')
  ax_var.set(xlabel='step', ylabel='gradient variance across groups',
             yscale='log', title='TRICE: its own estimator')
  ax_acc_rate.set(xlabel='step', ylabel='proposal acceptance rate')
  for ax in (ax_acc, ax_var, ax_acc_rate):
    ax.legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(root, 'curves.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def main(argv):
  del argv
  root, size = os.path.abspath(_WORKDIR.value), _SIZE.value
  unknown = sorted(set(_METHODS.value) - set(METHODS))
  if unknown:
    raise SystemExit(f'--methods: unknown {unknown}; valid: {list(METHODS)}')
  t0 = time.time()
  base = os.path.join(root, 'base')
  _run_all([(launch.command(f'configs/rationale_base.py:{size}', base, {}),
             base)], 1)
  overrides = dict(item.split('=', 1) for item in _SET.value)
  jobs = []
  for s in range(_SEEDS.value):
    for m in _METHODS.value:
      wd = os.path.join(root, m, f'seed{s}')
      jobs.append((launch.command(METHODS[m].format(size=size), wd,
                                 dict(overrides, init_from=base, seed=s)),
                   wd))
  _run_all(jobs, _PARALLEL.value)
  text = table(root, _METHODS.value, _SEEDS.value)
  with open(os.path.join(root, 'results.md'), 'w') as f:
    f.write(f'# E1 at size {size}, {_SEEDS.value} seeds\n\n{text}\n')
  print(text)
  print(f'plot: {plot(root, _METHODS.value, _SEEDS.value)}')
  print(f'total {time.time() - t0:.0f}s')


if __name__ == '__main__':
  app.run(main)
