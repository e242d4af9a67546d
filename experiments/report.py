"""Run and sweep reports: samples, summaries, result tables, plots."""

import json
import math
import os

from postrain import train


def truncate_metrics(workdir: str, step: int):
  """Drops `metrics.jsonl` rows after `step` (they are redone on resume)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return
  rows = [r for r in train.read_metrics(workdir) if r['step'] <= step]
  with open(path, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)


def write_samples(workdir, step, prompts, completions, records, correct):
  """Writes what the model says to `samples/step_<step>.jsonl`."""
  os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
  path = os.path.join(workdir, 'samples', f'step_{step}.jsonl')
  with open(path, 'w') as f:
    for p, c, r, ok in zip(prompts, completions, records, correct):
      f.write(json.dumps({'prompt': p, 'completion': c,
                          'answer': r.get('answer'), 'correct': bool(ok)})
              + '\n')


def markdown_table(rows: list[dict], columns: list[str]) -> str:
  """A GitHub-markdown table; floats with 4 significant digits."""
  def fmt(v):
    if isinstance(v, float):
      return 'nan' if math.isnan(v) else f'{v:.4g}'
    return str(v)
  lines = ['| ' + ' | '.join(columns) + ' |',
           '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(fmt(r.get(c, '')) for c in columns) + ' |'
            for r in rows]
  return '\n'.join(lines)


def write_summary(workdir, config, model_cfg, before: dict, after: dict):
  """Writes `summary.json` and `summary.md`, prints the table, returns it."""
  rows = train.read_metrics(workdir)
  steps = [r for r in rows if 'finite' in r]  # every train step's row
  losses = [r for r in steps if 'loss' in r]  # steps with an update
  rate = [r['tokens_per_s'] for r in losses if 'tokens_per_s' in r]
  summary = {
      'recipe': config.recipe,
      'steps': steps[-1]['step'] if steps else 0,
      'updates': int(steps[-1].get('updates', len(losses))) if steps else 0,
      'params': model_cfg.num_params(),
      'train_loss': losses[-1]['loss'] if losses else float('nan'),
      'tokens_per_s': sorted(rate)[len(rate) // 2] if rate else float('nan'),
      **{f'before/{k.split("/")[-1]}': v for k, v in before.items()},
      **{f'after/{k.split("/")[-1]}': v for k, v in after.items()},
  }
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  table = markdown_table(
      [{'metric': k, 'value': v} for k, v in summary.items()],
      ['metric', 'value'])
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(f'# {workdir}\n\n{table}\n')
  print(table)
  plot_metrics(workdir)
  print(f'summary: {os.path.join(workdir, "summary.md")}')
  return summary


def plot_metrics(workdir: str, keys=('loss', 'eval/loss', 'eval/accuracy',
                                     'reward/mean', 'eval/pass@8', 'kl_ref')):
  """Saves `metrics.png`: one panel per key against steps."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = train.read_metrics(workdir)
  keys = [k for k in keys if any(k in r for r in rows)]
  fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3),
                           squeeze=False)
  for ax, key in zip(axes[0], keys):
    pts = [(r['step'], r[key]) for r in rows if isinstance(r.get(key), float)]
    ax.plot(*zip(*pts), marker='.' if key.startswith('eval') else None)
    if 'loss' in key and min(v for _, v in pts) > 0:
      ax.set_yscale('log')
    ax.set_xlabel('step')
    ax.set_title(key)
  fig.tight_layout()
  path = os.path.join(workdir, 'metrics.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
