r"""A Bradley–Terry reward model on preference pairs.

The default (`tiny`) trains a scalar head on a 2-layer transformer over the
pairs of the synthetic preference task (configs/dpo.py), and reports
held-out pair accuracy and the correlation of its rewards with the known
reward over all 4096 responses:

  python -m experiments.run --config=configs/reward_model.py:tiny \
      --workdir=runs/rm

Then score online DPO samples with it (same `model` settings):

  python -m experiments.run --config=configs/dpo.py:tiny,online \
      --workdir=runs/dpo_rm --config.dpo.reward=runs/rm

Knobs (specs/preference.md §24): `rm.margin`, `rm.label_smoothing`,
`rm.magnitude`, `rm.centering`. Sweep: label smoothing × margin.
"""

import ml_collections

from configs import common
from configs import dpo


def get_config(arg=None):
  """`arg`: `tiny` (default)."""
  arg = common.parse_arg(arg, size='tiny')
  if arg.size != 'tiny':
    raise KeyError(f'unknown size {arg.size!r}; valid: tiny.')
  base = dpo.get_config('tiny')
  c = ml_collections.ConfigDict()
  c.recipe = 'reward_model'
  c.seed = 0
  c.total_steps = 300
  c.log_every = 10
  c.eval_every = 100
  c.init_from = ''  # e.g. an SFT or DPO run: the LM starts from its params
  c.model = base.model.copy_and_resolve_references()
  c.data = base.data.copy_and_resolve_references()
  c.rm = ml_collections.ConfigDict(dict(
      margin=0.0,  # μ
      label_smoothing=0.0,  # ε
      magnitude=1.0,  # m (scaled BT)
      centering=0.0,  # c of c·(r_c + r_r)²
  ))
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', lr=1e-3, schedule='warmup_cosine', warmup_steps=10,
      decay_steps=0, end_lr=1e-4, b1=0.9, b2=0.95, weight_decay=0.0,
      grad_clip=1.0, grad_accum=1))
  c.eval = ml_collections.ConfigDict(dict(num_pairs=256))
  c.ckpt = ml_collections.ConfigDict(dict(every=100, keep=2, use_async=True))
  c.mesh = [('data', -1), ('fsdp', 1), ('tensor', 1)]
  c.lock()
  return c


def sweep(add, arg=None):
  """Label smoothing × margin."""
  del arg
  for eps in (0.0, 0.1):
    for margin in (0.0, 0.5):
      add(**{'rm.label_smoothing': eps, 'rm.margin': margin})
