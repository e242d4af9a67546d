r"""TRICE: MCMC-EM over rationales with the control-variate estimator.

Phan et al., *Training Chain-of-Thought via Latent-Variable Inference*
(arXiv:2312.02179). Start from the rationale base model:

  python -m experiments.run --config=configs/trice.py:tiny \
      --workdir=runs/rationale/trice --config.init_from=runs/rationale/base

Arguments: `tiny` or `base` (size), `cv=false` (basic estimator, E1's
`trice_no_cv`), `init=none` (empty chains instead of hinted ones),
`gsm8k` (GSM8K from local JSONL: add
`--config.data.jsonl_path=DIR` holding train.jsonl and test.jsonl; with
`hf=MODEL_DIR` a local Hugging Face model and its tokenizer, `lora=RANK`
adapters on it; without, the built-in transformer with characters).
Sweep over 3 seeds: `python -m experiments.sweep --config=configs/trice.py`.
"""

import ml_collections

from configs import _rationale
from configs import common


def get_config(arg=None):
  """`arg`: e.g. `tiny`, `base,cv=false`, `tiny,init=none`, `gsm8k`,
  `gsm8k,hf=/models/qwen,lora=16`."""
  arg = common.parse_arg(arg, size='tiny', cv=True, init='hinted',
                         gsm8k=False, hf='', lora=0)
  if arg.hf and not arg.gsm8k:
    raise ValueError('hf=DIR is for the gsm8k variant (the arithmetic runs '
                     'start from configs/rationale_base.py).')
  _rationale.check_size(arg.size)
  tiny = arg.size == 'tiny'
  c = _rationale.common(ml_collections.ConfigDict(), arg.size, 'trice')
  c.total_steps = 60 if tiny else 1000
  c.log_every = 5
  c.eval_every = 30 if tiny else 250
  c.trice = ml_collections.ConfigDict(dict(
      batch_size=32 if tiny else 64,  # M examples per step
      num_samples=0 if tiny else 64,  # L resampled candidates (0: all 2M)
      control_variate=arg.cv,  # False: the basic estimator (β ≡ 0)
      init=arg.init,  # 'hinted' (rationalisation) or 'none'
      init_batch_size=128 if tiny else 512,  # prompts per hinted-init call
      max_new_tokens=48,  # T: rationale tokens (the memory's width)
      variance_every=5 if tiny else 25,  # gradient-variance metric; 0: off
      variance_groups=4 if tiny else 8,
  ))
  c.optim = _rationale.optim(3e-4 if tiny else 1e-4)
  if arg.gsm8k:
    c.data.update(task='gsm8k', tokenizer='char', max_len=512)
    c.model.update(max_seq_len=1024)
    c.trice.update(max_new_tokens=256)
    c.eval.update(max_new_tokens=256)
    if arg.hf:
      _rationale.real_model(c, arg.hf, arg.lora)
  c.lock()
  return c


def sweep(add, arg=None):
  """Three seeds."""
  del arg
  for seed in (0, 1, 2):
    add(seed=seed)
