r"""Estimators at equal sample budgets: accuracy before/after, over seeds.

  python -m experiments.rl_estimators --workdir=runs/rl_est \
      [--algos=grpo,rloo,ppo,topr,w_reinforce] [--seeds=2] \
      [--set=total_steps=40]

  # E4: PSR vs NSR vs W-REINFORCE on DigitSum, exact pass@k curves
  python -m experiments.rl_estimators --workdir=runs/e4 \
      --config='configs/digitsum.py:{algo}' \
      --base_config=configs/digitsum.py:sft --base_steps=400 \
      --algos=psr,nsr,w_reinforce,grpo

Trains the SFT base once (`--base_config`, `--base_steps`; or reuse one
with `--init_from`), then runs each estimator (`--config` with `{algo}`
filled in) from it over `--seeds`. Every preset samples the same prompts × group size per step, so
at equal steps the sample budgets are equal (PPO makes more updates from
them). Runs are ordinary `experiments.run` workdirs (finished ones are
skipped). Writes `results.md` (held-out greedy accuracy, pass@1, pass@k,
coverage where the task has it, training sample accuracy over the first
and last tenth of the steps, seconds per step in generation and in
updates; mean ± std over seeds) and `curves.png` (training sample accuracy
against steps; pass@k against k before and after).
"""

import os
import time

from absl import app
from absl import flags

from experiments import builders
from experiments import launch
from experiments import report

_WORKDIR = flags.DEFINE_string('workdir', 'runs/rl_est', 'Root of all runs.')
_CONFIG = flags.DEFINE_string('config', 'configs/rl.py:{algo}',
                              'Config of one estimator run; {algo} is filled.')
_ALGOS = flags.DEFINE_list('algos', ['grpo', 'rloo', 'ppo', 'topr',
                                     'w_reinforce'], 'Estimators (--config).')
_BASE_CONFIG = flags.DEFINE_string('base_config', 'configs/sft.py:tiny',
                                   'Config of the base (SFT) run.')
_SEEDS = flags.DEFINE_integer('seeds', 2, 'Seeds per estimator.')
_PARALLEL = flags.DEFINE_integer('parallel', 2, 'Runs at once.')
_INIT_FROM = flags.DEFINE_string('init_from', '', 'An SFT workdir to start '
                                 'from; empty: train one in <workdir>/base.')
_BASE_STEPS = flags.DEFINE_integer('base_steps', 200, 'SFT steps of the base '
                                   '(0: the base config\'s own).')
_SET = flags.DEFINE_multi_string('set', [], '`key=value` for every RL run, '
                                 'e.g. total_steps=40.')


def main(argv):
  del argv
  root = os.path.abspath(_WORKDIR.value)
  specs = {a: _CONFIG.value.format(algo=a) for a in _ALGOS.value}
  for spec in specs.values():  # unknown estimators fail before anything runs
    module, arg = builders.load_config_module(spec)
    module.get_config(arg)
  t0 = time.time()
  base = os.path.abspath(_INIT_FROM.value) if _INIT_FROM.value else \
      os.path.join(root, 'base')
  jobs = []
  if not _INIT_FROM.value:
    jobs.append((launch.command(_BASE_CONFIG.value, base, (
        {'total_steps': _BASE_STEPS.value} if _BASE_STEPS.value else {})),
                 base))
  overrides = dict(item.split('=', 1) for item in _SET.value)
  runs = [(launch.command(specs[algo], wd,
                         dict(overrides, init_from=base, seed=s)), wd)
          for s in range(_SEEDS.value) for algo in _ALGOS.value
          for wd in [os.path.join(root, algo, f'seed{s}')]]
  for batch, parallel in ((jobs, 1), (runs, _PARALLEL.value)):
    failed = launch.launch([(c, wd) for c, wd in batch if not os.path.exists(
        os.path.join(wd, 'summary.json'))], parallel)
    if failed:
      raise SystemExit(f'{len(failed)} runs failed; see {failed[0]}/log.txt')
  text = report.estimator_table(root, _ALGOS.value, _SEEDS.value)
  with open(os.path.join(root, 'results.md'), 'w') as f:
    f.write(f'# RL estimators from {base}, {_SEEDS.value} seeds\n\n{text}\n')
  print(text)
  print(f'plot: {report.estimator_curves(root, _ALGOS.value, _SEEDS.value)}')
  print(f'total {time.time() - t0:.0f}s')


if __name__ == '__main__':
  app.run(main)
