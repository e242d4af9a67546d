r"""Load time and peak host memory of `load_hf` against the safetensors size.

  python -m experiments.bench.bench_hf_load --preset=qwen2.5-0.5b

Writes a random-weight model of the preset's shape as a bfloat16 HF
directory (`save_hf`, sharded), then loads it in fresh processes, once per
`--dtypes` entry, and prints one table: file size, largest tensor, load
time, peak RSS (VmHWM, else `resource.getrusage`) and its growth over the
RSS after imports, against the bytes of the loaded parameters. On a CPU the
"device" is host memory, so the loaded model itself counts in the RSS: the
growth should be close to the model's bytes plus one tensor.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

_PRESET = flags.DEFINE_string('preset', 'qwen2.5-0.5b', 'Model preset.')
_DTYPES = flags.DEFINE_list('dtypes', ['bfloat16', 'float32'],
                            'Parameter dtypes to load as.')
_DIR = flags.DEFINE_string('dir', None, 'Checkpoint directory (default: a '
                           'temporary one); written when empty.')
_SHARD = flags.DEFINE_integer('max_shard_size', 2**29, 'Bytes per shard.')
_LOAD = flags.DEFINE_string('load', None, 'Internal: load this dtype and '
                            'print a JSON line.')

_GIB = 2.0**30


def _rss_gib() -> float:
  """Peak resident set size of this process, GiB.

  Linux's VmHWM when available: `getrusage`'s ru_maxrss carries the parent's
  peak across fork + exec, which would hide the load's own peak.
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024 / _GIB
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / _GIB


def _write(path: str) -> None:
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from postrain import data, models  # pylint: disable=g-import-not-at-top
  cfg = models.TransformerConfig.preset(_PRESET.value).replace(
      param_dtype='bfloat16')
  model = nnx.merge(*models.random_state(cfg))
  data.write_tiny_tokenizer(path)
  models.save_hf(model, data.ChatTokenizer(path), path,
                 max_shard_size=_SHARD.value)


def _load(path: str, dtype: str) -> dict:
  from flax import nnx  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from postrain import models  # pylint: disable=g-import-not-at-top
  jax.numpy.zeros(1).block_until_ready()  # backend up before the baseline
  base = _rss_gib()
  start = time.perf_counter()
  model, _ = models.load_hf(path, dtype=dtype)
  leaves = jax.tree.leaves(jax.block_until_ready(nnx.state(model)))
  seconds = time.perf_counter() - start
  return dict(dtype=dtype, seconds=seconds, base_gib=base,
              peak_gib=_rss_gib(),
              model_gib=sum(x.nbytes for x in leaves) / _GIB)


def _files(path: str) -> tuple[float, float]:
  """(total safetensors GiB, largest tensor GiB)."""
  import safetensors  # pylint: disable=g-import-not-at-top
  total, largest = 0.0, 0.0
  for name in os.listdir(path):
    if name.endswith('.safetensors'):
      file = os.path.join(path, name)
      total += os.path.getsize(file)
      with safetensors.safe_open(file, 'numpy') as f:
        for key in f.keys():
          shape = f.get_slice(key).get_shape()
          largest = max(largest, 2.0 * np.prod(shape))  # bfloat16
  return total / _GIB, largest / _GIB


def main(argv):
  del argv
  path = _DIR.value or os.path.join(tempfile.gettempdir(),
                                    f'bench_hf_{_PRESET.value}')
  if _LOAD.value:
    print(json.dumps(_load(path, _LOAD.value)))
    return
  from experiments import report  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(os.path.join(path, 'config.json')):
    start = time.perf_counter()
    _write(path)
    print(f'wrote {path} in {time.perf_counter() - start:.1f} s')
  files_gib, largest_gib = _files(path)
  rows = []
  for dtype in _DTYPES.value:
    out = subprocess.run(
        [sys.executable, '-m', 'experiments.bench.bench_hf_load',
         f'--preset={_PRESET.value}', f'--dir={path}', f'--load={dtype}'],
        check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    rows.append({
        'dtype': dtype,
        'files GiB': f'{files_gib:.3f}',
        'largest tensor GiB': f'{largest_gib:.3f}',
        'loaded params GiB': f'{r["model_gib"]:.3f}',
        'load s': f'{r["seconds"]:.1f}',
        'RSS before GiB': f'{r["base_gib"]:.3f}',
        'peak RSS GiB': f'{r["peak_gib"]:.3f}',
        'growth - params GiB': (
            f'{r["peak_gib"] - r["base_gib"] - r["model_gib"]:.3f}'),
    })
  print(report.markdown_table(rows, list(rows[0])))


if __name__ == '__main__':
  app.run(main)
