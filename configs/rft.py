r"""Rejection-sampling fine-tuning (RFT) and its relatives ReST-EM and RAFT.

RFT: Yuan et al., *Scaling Relationship on Learning Mathematical Reasoning
with Large Language Models* (arXiv:2308.01825). ReST-EM: Singh et al.,
*Beyond Human Data* (arXiv:2312.06585). RAFT: Dong et al., *RAFT: Reward
rAnked FineTuning* (arXiv:2304.06767). From the rationale base model:

  python -m experiments.run --config=configs/rft.py:tiny \
      --workdir=runs/rationale/rft --config.init_from=runs/rationale/base

Arguments: `rft` (default), `rest_em` or `raft`, and `tiny` or `base`,
e.g. `--config=configs/rft.py:rest_em,tiny`. Only answers are supervised
here, so RFT's "add the gold data" step has no gold rationales to add.
"""

from configs import _rs
from configs import common


def get_config(arg=None):
  """`arg`: a recipe (`rft`, `rest_em`, `raft`) and/or a size."""
  words = [w for w in (arg or '').split(',') if w]
  words = [f'size={w}' if w in ('tiny', 'base') else w for w in words]
  arg = common.parse_arg(','.join(words), recipe='rft', size='tiny')
  if arg.recipe not in ('rft', 'rest_em', 'raft'):
    raise KeyError(f'unknown recipe {arg.recipe!r}; valid: rft, rest_em, '
                   'raft.')
  return _rs.config(arg.recipe, arg.size)


def sweep(add, arg=None):
  """Three seeds."""
  del arg
  for seed in (0, 1, 2):
    add(seed=seed)
