r"""GRPO on synthetic arithmetic: `configs/rl.py` with `algo=grpo`.

  python -m experiments.run --config=configs/grpo.py:tiny --workdir=runs/grpo \
      --config.init_from=runs/sft
"""

from configs import rl


def get_config(arg=None):
  """`tiny` (default) or `base`."""
  size = (arg or 'tiny').strip()
  if size not in ('tiny', 'base'):
    raise KeyError(f'configs/grpo.py:{size}: valid sizes are tiny, base.')
  return rl.get_config(f'grpo,{size}')


def sweep(add, arg=None):
  del arg
  rl.sweep(add, 'grpo')
