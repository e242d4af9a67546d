"""Metric writers: JSONL (every step) and TensorBoard (tensorboardX)."""

import json
import math
import os

from tensorboardX import SummaryWriter


class MetricWriter:
  """Appends `{'step': s, **metrics}` lines to `metrics.jsonl` and to TB."""

  def __init__(self, workdir: str):
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    self._tb = SummaryWriter(os.path.join(workdir, 'tb'))

  def write(self, step: int, metrics: dict[str, float]):
    clean = {k: float(v) for k, v in metrics.items()}
    row = {k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}
    self._jsonl.write(json.dumps({'step': int(step), **row}) + '\n')
    for k, v in clean.items():
      if math.isfinite(v):
        self._tb.add_scalar(k, v, int(step))

  def flush(self):
    self._jsonl.flush()
    self._tb.flush()

  def close(self):
    self._jsonl.close()
    self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """The rows of a run's `metrics.jsonl`."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
