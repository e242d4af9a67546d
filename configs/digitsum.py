r"""DigitSum (many correct answers): exact pass@k for PSR / NSR / W-REINFORCE.

shared/specs/experiments.md E4. First the base model, SFT on the skewed
corpus, then the RL arms from it; every evaluation computes pass@k for
k = 1 … 256 and coverage@128 exactly over the 90 possible answers:

  python -m experiments.run --config=configs/digitsum.py:sft --workdir=runs/ds
  python -m experiments.run --config=configs/digitsum.py:nsr \
      --workdir=runs/ds_nsr --config.init_from=runs/ds

Arms: `sft` (base), `psr`, `nsr`, `w_reinforce` (λ = 0.1), `grpo`,
`grpo_ppo2` (two PPO epochs per batch). Sweep all arms × 3 seeds from one
base: `python -m experiments.sweep --config=configs/digitsum.py:nsr
--set init_from=runs/ds`.
"""

import ml_collections

from configs import common
from configs import rl

ARMS = {
    'psr': dict(loss_type='w_reinforce', advantage='', pm1_rewards=True,
                loss_kwargs={'lam': 1.0, 'neg_weight': 0.0}),
    'nsr': dict(loss_type='w_reinforce', advantage='', pm1_rewards=True,
                loss_kwargs={'lam': 0.0, 'neg_weight': 1.0}),
    'w_reinforce': dict(loss_type='w_reinforce', advantage='',
                        pm1_rewards=True,
                        loss_kwargs={'lam': 0.1, 'neg_weight': 1.0}),
    'grpo': dict(loss_type='ppo_clip', advantage='grpo'),
    'grpo_ppo2': dict(loss_type='ppo_clip', advantage='grpo', epochs=2,
                      num_minibatches=2),
}


def get_config(arg=None):
  """`arg`: `sft` or an ARMS key (default `sft`; `tiny` is `sft`)."""
  arm = common.parse_arg(arg, arm='sft').arm
  arm = 'sft' if arm == 'tiny' else arm
  if arm != 'sft' and arm not in ARMS:
    raise KeyError(f'unknown arm {arm!r}; valid: sft, {sorted(ARMS)}.')
  c = ml_collections.ConfigDict()
  c.recipe = 'sft' if arm == 'sft' else 'rl'
  c.seed = 0
  c.total_steps = 400 if arm == 'sft' else 100
  c.log_every = 10
  c.eval_every = 200 if arm == 'sft' else 50
  c.init_from = ''
  c.model = ml_collections.ConfigDict(dict(
      preset='tiny', num_layers=2, embed_dim=64, hidden_dim=256, num_heads=4,
      num_kv_heads=4, head_dim=16, max_seq_len=32, dtype='float32'))
  c.data = ml_collections.ConfigDict(dict(
      task='digitsum', tokenizer='char', num_train=20000, max_len=16))
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', lr=3e-3 if arm == 'sft' else 3e-4,
      schedule='warmup_cosine', warmup_steps=20 if arm == 'sft' else 5,
      decay_steps=0, end_lr=3e-5, b1=0.9, b2=0.95, weight_decay=0.0,
      grad_clip=1.0, grad_accum=1))
  c.eval = ml_collections.ConfigDict(dict(
      num_prompts=17, max_new_tokens=4, temperature=0.0, batch_size=17,
      num_samples_written=17))
  if arm == 'sft':
    c.data.update(batch_size=64, packing=False, overflow='error')
    c.loss = ml_collections.ConfigDict(dict(
        label_smoothing=0.0, z_loss=0.0, chunk_size=128))
    c.eval.loss_batches = 1
  else:
    c.rl = ml_collections.ConfigDict(rl.get_config('grpo').rl.to_dict())
    c.rl.update(reducer='sequence_mean_token_sum', group_size=8,
                prompts_per_step=8, max_new_tokens=4, kl_coef=0.0)
    c.rl.update(ARMS[arm])
    c.eval.update(pass_prompts=17, num_samples=8)  # exact: no sampling
  c.ckpt = ml_collections.ConfigDict(dict(every=100, keep=2, use_async=True))
  c.mesh = [('data', -1), ('fsdp', 1), ('tensor', 1)]
  c.lock()
  return c


def sweep(add, arg=None):
  """Three seeds of the arm."""
  del arg
  for seed in (0, 1, 2):
    add(seed=seed)
