r"""Denoising score matching on 2-D toys or the 8×8 digits (recipe 'score').

The default (`tiny`) trains an MLP score model on an 8-component 2-D
Gaussian-mixture ring on the CPU in about a minute and reports held-out DSM,
score R² against the analytic scores, and MMD / sliced W2 of Heun samples:

  python -m experiments.run --config=configs/score.py:tiny --workdir=runs/score

Other variants: `digits` (conv net on the sklearn 8×8 digits), and
`tiny,data=two_moons` etc. for any of `postrain.score.TOY_DATASETS`.
Sweep (the three reproductions of issue 7, `sweep_arg` picks one):

  python -m experiments.sweep --config=configs/score.py:tiny \
      --workdir=runs/score_sweep --sweep_arg=gmm

`experiments/score_repro.py` runs the reproductions end to end and prints
their tables.
"""

import ml_collections

from configs import common


def get_config(arg=None):
  """`arg`: `tiny` (2-D mixture) or `digits`; `data=NAME` picks a toy set."""
  arg = common.parse_arg(arg, size='tiny', data='gmm_ring')
  digits = arg.size == 'digits'
  c = ml_collections.ConfigDict()
  c.recipe = 'score'
  c.seed = 0
  c.total_steps = 3000 if digits else 2000
  c.log_every = 50
  c.eval_every = 500
  c.init_from = ''

  c.data = ml_collections.ConfigDict(dict(
      name='digits' if digits else arg.data,  # or a TOY_DATASETS key
      num_train=1500 if digits else 5000,
      num_test=297 if digits else 1000,
      batch_size=128 if digits else 256))

  c.model = ml_collections.ConfigDict(dict(
      kind='conv' if digits else 'mlp',  # mlp | conv (images only)
      hidden=128, depth=3, embed_dim=32,  # hidden: mlp only
      channels=32))  # conv only

  # The network sees c_in·x/α and c_noise(σ/α) for every process.
  c.diffusion = ml_collections.ConfigDict(dict(
      process='edm',  # edm | ve | vp | ou
      parametrization='x0',  # eps | x0 | score | v
      precondition=True,  # Karras D = c_skip·x + c_out·F; needs x0
      sigma_data=0.0,  # 0 = the training data's standard deviation
      ve_sigma_min=0.01, ve_sigma_max=10.0,  # process=ve only
      vp_beta_min=0.1, vp_beta_max=20.0))  # process=vp only

  c.loss = ml_collections.ConfigDict(dict(
      weighting='edm',  # unit | snr_inv | v | min_snr | likelihood | edm
      gamma=5.0,  # min_snr only
      t_min=1e-3,  # ve / vp / ou: t ~ U[t_min, 1]
      p_mean=-1.2, p_std=1.2,  # edm: ln σ ~ N(p_mean, p_std²)
      stratified=True))

  c.sampler = ml_collections.ConfigDict(dict(
      name='heun',  # euler_maruyama | pf_euler | heun | predictor_corrector
      num_steps=40,  # 18 (NFE 35) leaves visible error on 2-D toys
      sigma_min=0.002, sigma_max=80.0, rho=7.0))  # edm grid; R² levels too

  c.eval = ml_collections.ConfigDict(dict(
      num_draws=8,  # fixed (t, ε) draws per held-out point
      r2_levels=12, r2_points=1000, num_samples=1000))

  c.early_stop = ml_collections.ConfigDict(dict(patience=0))  # 0 = off

  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', lr=2e-3, schedule='warmup_cosine', warmup_steps=100,
      decay_steps=0, end_lr=1e-5, b1=0.9, b2=0.99, weight_decay=0.0,
      grad_clip=1.0, grad_accum=1))

  c.ckpt = ml_collections.ConfigDict(dict(every=500, keep=2, use_async=True))
  c.mesh = [('data', -1), ('fsdp', 1), ('tensor', 1)]
  c.lock()
  return c


def sweep(add, arg=None):
  """The reproductions of issue 7; `arg` = gmm | gaussian | early_stop.

  gmm: DSM on the 2-D mixture with three weightings (R² vs the exact GMM
  score). gaussian: the digits model at two training lengths (R² vs the
  Gaussian score by noise level; teleport in score_repro.py). early_stop:
  a 64-point training set, long training, held-out vs train DSM.
  """
  if arg in (None, 'gmm'):
    for weighting in ('edm', 'unit', 'min_snr'):
      add(**{'loss.weighting': weighting})
  if arg in (None, 'gaussian'):
    for steps in (300, 3000):
      add(**{'data.name': 'digits', 'model.kind': 'conv',
             'data.num_train': 1500, 'data.num_test': 297,
             'data.batch_size': 128, 'total_steps': steps})
  if arg in (None, 'early_stop'):
    add(**{'data.num_train': 64, 'data.batch_size': 64,
           'total_steps': 6000, 'eval_every': 250})
