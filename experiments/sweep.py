r"""Runs every point of a config's `sweep(add)` and writes one results table.

  python -m experiments.sweep --config=configs/sft.py:tiny --workdir=runs/sw \
      [--parallel=2] [--print_commands]

Each point is an independent run in `<workdir>/<name>/`: finished points
(with `summary.json`) are skipped, interrupted ones resume. With
`--print_commands` the commands are printed, one per line, for a cluster's
own scheduler, and nothing runs. The table goes to `results.md` and
`results.csv`.
"""

import csv
import json
import os
import re

from absl import app
from absl import flags

from experiments import builders
from experiments import launch as launch_lib
from experiments import report

_CONFIG = flags.DEFINE_string('config', None, 'Config file `path.py[:arg]`.',
                              required=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep root.', required=True)
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Runs at once (processes).')
_PRINT = flags.DEFINE_bool('print_commands', False,
                           'Print the run commands and exit.')
_SWEEP_ARG = flags.DEFINE_string('sweep_arg', None, 'Passed to sweep().')
_SET = flags.DEFINE_multi_string(
    'set', [], '`key=value` applied to every point (before its own '
    'overrides), e.g. --set=total_steps=50.')


def points(spec: str, sweep_arg=None, common=()) -> list[dict]:
  """The override dicts of the config's `sweep(add)`, keys validated.

  Args:
    spec: `path.py[:arg]`.
    sweep_arg: passed to `sweep(add, arg)`.
    common: `key=value` strings applied to every point first.
  """
  module, arg = builders.load_config_module(spec)
  if not hasattr(module, 'sweep'):
    raise SystemExit(f'{spec} defines no sweep(add).')
  base = dict(item.split('=', 1) for item in common)
  found = []
  module.sweep(lambda **kw: found.append({**base, **kw}), sweep_arg)
  config = module.get_config(arg)
  for p in found:
    builders.check_keys(config, p)
  if not found:
    raise SystemExit(f'{spec}: sweep(add) added no run.')
  return found


def run_name(overrides: dict, common=()) -> str:
  """Names a point by its own overrides (not the ones all points share)."""
  shared = {item.split('=', 1)[0] for item in common}
  text = ','.join(f'{k}={v}' for k, v in sorted(overrides.items())
                  if k not in shared)
  return re.sub(r'[^\w.,=+-]', '_', text) or 'default'


def main(argv):
  del argv
  root = os.path.abspath(_WORKDIR.value)
  runs = [(p, os.path.join(root, run_name(p, _SET.value))) for p in points(
      _CONFIG.value, _SWEEP_ARG.value, _SET.value)]
  if _PRINT.value:
    for p, wd in runs:
      print(' '.join(launch_lib.command(_CONFIG.value, wd, p)))
    return
  todo = [(p, wd) for p, wd in runs
          if not os.path.exists(os.path.join(wd, 'summary.json'))]
  print(f'{len(runs)} runs, {len(runs) - len(todo)} already finished.')
  failed = launch_lib.launch(
      [(launch_lib.command(_CONFIG.value, wd, p), wd) for p, wd in todo],
      _PARALLEL.value)
  _table(root, runs, failed)
  if failed:
    raise SystemExit(f'{len(failed)} runs failed; see their log.txt.')


def _table(root, runs, failed):
  rows = []
  for p, wd in runs:
    path = os.path.join(wd, 'summary.json')
    row = dict(p, run=os.path.basename(wd))
    if os.path.exists(path):
      with open(path) as f:
        row.update(json.load(f))
    else:
      row['status'] = 'failed' if wd in failed else 'missing'
    rows.append(row)
  columns = list(dict.fromkeys(k for r in rows for k in r))
  with open(os.path.join(root, 'results.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  table = report.markdown_table(rows, columns)
  with open(os.path.join(root, 'results.md'), 'w') as f:
    f.write(f'# Sweep {_CONFIG.value}\n\n{table}\n')
  print(table)


if __name__ == '__main__':
  app.run(main)
