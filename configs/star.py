r"""STaR: sample → keep correct → rationalise failures → fine-tune the base.

Zelikman et al., *STaR: Bootstrapping Reasoning With Reasoning*
(arXiv:2203.14465). From the rationale base model:

  python -m experiments.run --config=configs/star.py:tiny \
      --workdir=runs/rationale/star --config.init_from=runs/rationale/base

`total_steps` is split over `rs.iterations`, growing 20% per iteration.
Add `base` for the accelerator size; sweep over 3 seeds with
`python -m experiments.sweep --config=configs/star.py`.
"""

from configs import _rs
from configs import common


def get_config(arg=None):
  """`arg`: `tiny` (default) or `base`."""
  return _rs.config('star', common.parse_arg(arg, size='tiny').size)


def sweep(add, arg=None):
  """Three seeds."""
  del arg
  for seed in (0, 1, 2):
    add(seed=seed)
