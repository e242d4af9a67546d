"""Run and sweep reports: samples, summaries, result tables, plots."""

import json
import math
import os

import numpy as np

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


def _stat(values) -> str:
  values = [v for v in values if v is not None and np.isfinite(v)]
  return f'{np.mean(values):.3f} ± {np.std(values):.3f}' if values else ''


def _window_mean(rows, key, first: bool) -> float | None:
  pts = [r[key] for r in rows if key in r]
  if not pts:
    return None
  n = max(len(pts) // 10, 1)
  return float(np.mean(pts[:n] if first else pts[-n:]))


def _pass_ks(summaries) -> list[int]:
  """The k of every `after/pass@k` key (not `pass@1_rare`), sorted."""
  ks = {k.split('@')[1] for s in summaries for k in s
        if k.startswith('after/pass@')}
  return sorted(int(k) for k in ks if k.isdigit())


def estimator_table(root: str, algos, seeds: int) -> str:
  """`experiments.rl_estimators`: one row per estimator, mean ± std over
  the seeds of `root/<algo>/seed<s>`."""
  rows = []
  for algo in algos:
    runs = [os.path.join(root, algo, f'seed{s}') for s in range(seeds)]
    summaries, metrics = [], []
    for wd in runs:
      with open(os.path.join(wd, 'summary.json')) as f:
        summaries.append(json.load(f))
      metrics.append([r for r in train.read_metrics(wd) if 'loss' in r])
    pass_k = _pass_ks(summaries)
    row = {'estimator': algo, 'seeds': len(runs),
           'accuracy before': _stat([s['before/accuracy'] for s in summaries]),
           'accuracy after': _stat([s['after/accuracy'] for s in summaries])}
    for k in pass_k[:1] + pass_k[-1:]:
      row[f'pass@{k} after'] = _stat([s.get(f'after/pass@{k}')
                                      for s in summaries])
    if any('after/coverage@128' in s for s in summaries):
      row['coverage@128 after'] = _stat([s.get('after/coverage@128')
                                         for s in summaries])
    # Sample accuracy, not reward/mean: TOPR and W-REINFORCE use ±1 rewards.
    row['train accuracy first → last tenth'] = (
        _stat([_window_mean(m, 'accuracy', True) for m in metrics]) +
        ' → ' + _stat([_window_mean(m, 'accuracy', False) for m in metrics]))
    for key in ('time/generate_s', 'time/update_s'):
      row[f'{key.split("/")[1]} per step'] = _stat(
          [np.median([r[key] for r in m if key in r]) for m in metrics])
    rows.append(row)
  columns = list(dict.fromkeys(k for r in rows for k in r))
  return markdown_table(rows, columns)


def estimator_curves(root: str, algos, seeds: int) -> str:
  """`curves.png`: training sample accuracy (5-step running mean) against
  steps; held-out pass@k against k, before (dashed) and after, seed mean."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, ax_k) = plt.subplots(1, 2, figsize=(11, 4))
  for i, algo in enumerate(algos):
    summaries = []
    for s in range(seeds):
      wd = os.path.join(root, algo, f'seed{s}')
      rows = [r for r in train.read_metrics(wd) if 'accuracy' in r]
      w = min(5, len(rows))  # running mean over w steps
      acc = np.convolve([r['accuracy'] for r in rows], np.ones(w) / w,
                        mode='valid')
      ax.plot([r['step'] for r in rows][w - 1:], acc, color=f'C{i}',
              alpha=0.8, label=algo if s == 0 else None)
      with open(os.path.join(wd, 'summary.json')) as f:
        summaries.append(json.load(f))
    ks = _pass_ks(summaries)
    for when, style in (('before', '--'), ('after', '-')):
      if when == 'before' and i:  # every arm starts from the same base
        continue
      pts = [np.mean([s[f'{when}/pass@{k}'] for s in summaries]) for k in ks]
      ax_k.plot(ks, pts, style, marker='.', color='k' if when == 'before'
                else f'C{i}', label='base' if when == 'before' else algo)
  ax.set(xlabel='step', ylabel='training sample accuracy (5-step mean)')
  ax_k.set(xlabel='k', ylabel='held-out pass@k')
  ax_k.set_xscale('log', base=2)
  if ks:
    ax_k.set_xticks(ks, [str(k) for k in ks])
  for a in (ax, ax_k):
    a.legend(fontsize=8)
  fig.tight_layout()
  path = os.path.join(root, 'curves.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
