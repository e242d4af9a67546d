r"""Online RL with a verifiable reward on synthetic arithmetic.

One file for the policy-gradient family; the argument picks the estimator:

  python -m experiments.run --config=configs/rl.py:grpo --workdir=runs/grpo \
      --config.init_from=runs/sft

`grpo` (default), `dr_grpo`, `rloo`, `reinforce`, `ppo` (value head, GAE,
KL in reward), `gspo`, `topr`, `w_reinforce`, `nft`; add `,base` for the GPU
size. Start from an SFT run (`init_from`) with the same `model` settings:
RL sharpens what the base model can already sample. Sweep (estimator ×
its main knob): `python -m experiments.sweep --config=configs/rl.py:grpo`.
"""

import ml_collections

from configs import common

# Estimator presets (shared/specs/policy_gradient.md §10, scaled down).
ALGOS = {
    # DeepSeekMath uses KL β = 0.04 (k3, in the loss); the tiny default
    # measured in the README uses none (sweep: rl.kl_coef ∈ {0, 0.04}).
    'grpo': dict(loss_type='ppo_clip', advantage='grpo', kl_coef=0.0,
                 reducer='sequence_mean_token_mean'),
    'dr_grpo': dict(loss_type='ppo_clip', advantage='dr_grpo',
                    reducer='sequence_mean_token_sum_norm'),
    'rloo': dict(loss_type='pg', advantage='rloo',
                 reducer='sequence_mean_token_sum'),
    'reinforce': dict(loss_type='pg', advantage='reinforce',
                      reducer='sequence_mean_token_sum'),
    'ppo': dict(loss_type='ppo_clip', advantage='gae', value_coef=0.1,
                kl_in_reward=0.05, epochs=2, num_minibatches=2,
                reducer='token_mean'),
    'gspo': dict(loss_type='gspo', advantage='grpo',
                 reducer='sequence_mean_token_mean'),
    'topr': dict(loss_type='topr', advantage='', pm1_rewards=True,
                 reducer='sequence_mean_token_sum',
                 loss_kwargs={'baseline': 0.0}),
    'w_reinforce': dict(loss_type='w_reinforce', advantage='',
                        pm1_rewards=True, reducer='sequence_mean_token_sum',
                        loss_kwargs={'lam': 0.1}),
    'nft': dict(loss_type='nft', advantage='',
                reducer='sequence_mean_token_sum_norm'),
}


def _parse(arg):
  """`grpo`, `ppo,base`, `algo=topr,size=tiny`: estimator and size."""
  words = [w for w in (arg or '').split(',') if w]
  words = [f'size={w}' if w in ('tiny', 'base') else w for w in words]
  arg = common.parse_arg(','.join(words), algo='grpo', size='tiny')
  if arg.algo not in ALGOS:
    raise KeyError(f'unknown estimator {arg.algo!r}; valid: {sorted(ALGOS)}.')
  if arg.size not in ('tiny', 'base'):
    raise KeyError(f'unknown size {arg.size!r}; valid: tiny, base.')
  return arg


def get_config(arg=None):
  """`arg`: an ALGOS key and/or a size (`tiny`, `base`); default grpo,tiny."""
  arg = _parse(arg)
  base = arg.size == 'base'
  c = ml_collections.ConfigDict()
  c.recipe = 'rl'
  c.seed = 0
  c.total_steps = 1000 if base else 150
  c.log_every = 5
  c.eval_every = 50
  c.init_from = ''  # workdir of an SFT run: start from its parameters

  # Must match the SFT run given in init_from (configs/sft.py:tiny).
  c.model = ml_collections.ConfigDict(dict(
      preset='tiny', num_layers=2, embed_dim=128, hidden_dim=512,
      num_heads=4, num_kv_heads=4, head_dim=32, max_seq_len=128,
      dtype='float32'))
  c.data = ml_collections.ConfigDict(dict(
      task='arithmetic', tokenizer='char', data_dir='', min_steps=1,
      max_steps=3, operand_max=9, num_train=20000, num_test=500,
      max_len=32))  # max_len: prompt tokens

  c.rl = ml_collections.ConfigDict(dict(
      loss_type='ppo_clip',  # a key of postrain.losses.POLICY_LOSSES
      loss_kwargs={},  # the kernel's own knobs, e.g. eps_high, lam, baseline
      advantage='grpo',  # a key of ADVANTAGES, or '' for topr/w_reinforce/nft
      advantage_kwargs={},
      reducer='sequence_mean_token_mean',  # a key of REDUCERS
      group_size=8,  # G samples per prompt
      prompts_per_step=16,
      epochs=1,  # update passes over each rollout batch
      num_minibatches=1,  # updates per pass
      max_new_tokens=40,
      temperature=1.0,
      rewards='correct:1',  # name:weight,... of experiments/phases/rl.py
      reward_model='',  # workdir of a reward_model run; use it as rm:WEIGHT
      unlikeliness=0.0,  # β_rank of the unlikeliness reward (0.25); 0: off
      pm1_rewards=False,  # map rewards to 2·correct − 1 (PSR/NSR, TOPR)
      kl_coef=0.0,  # β of KL in the loss (GRPO)
      kl_estimator='k3',
      kl_in_reward=0.0,  # β of KL in the reward (PPO)
      entropy_coef=0.0,
      value_coef=0.0,  # > 0 iff advantage='gae'
      value_clip=0.2,
      correction='',  # '' or tis_token, tis_seq, mis_seq, geo_filter
      correction_kwargs={},
      gamma=1.0, lam=0.95,
  ))
  c.rl.update(ALGOS[arg.algo])

  # LoRA adapters (rank 0 = off); the KL reference is then the frozen base.
  c.lora = ml_collections.ConfigDict(dict(rank=0, alpha=16.0,
                                          targets='q,k,v,o'))

  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', lr=2e-4, schedule='warmup_cosine', warmup_steps=5,
      decay_steps=0, end_lr=1e-5, b1=0.9, b2=0.95, weight_decay=0.0,
      grad_clip=1.0, grad_accum=1))
  c.eval = ml_collections.ConfigDict(dict(
      num_prompts=200, max_new_tokens=40, temperature=0.0, batch_size=100,
      num_samples_written=20,
      pass_prompts=50, num_samples=8))  # pass@k from num_samples per prompt
  c.ckpt = ml_collections.ConfigDict(dict(every=30, keep=2, use_async=True))
  c.mesh = [('data', -1), ('fsdp', 1), ('tensor', 1)]
  if base:
    c.model.update(num_layers=4, embed_dim=256, hidden_dim=1024,
                   num_heads=8, num_kv_heads=4, head_dim=32)
    c.data.update(min_steps=2, max_steps=4, num_train=200000)
    c.rl.update(group_size=16, prompts_per_step=32)
  c.lock()
  return c


def sweep(add, arg=None):
  """The estimator's main knob: clip range, KL β or λ, over 2 seeds."""
  algo = _parse(arg).algo
  knob = {
      'grpo': ('rl.kl_coef', (0.0, 0.04)),
      'dr_grpo': ('optim.lr', (1e-4, 2e-4)),
      'rloo': ('optim.lr', (1e-4, 2e-4)),
      'reinforce': ('optim.lr', (1e-4, 2e-4)),
      'ppo': ('rl.kl_in_reward', (0.0, 0.05)),
      'gspo': ('optim.lr', (1e-4, 2e-4)),
      'topr': ('rl.loss_kwargs.baseline', (-0.5, 0.0, 0.5)),
      'w_reinforce': ('rl.loss_kwargs.lam', (0.0, 0.1, 1.0)),
      'nft': ('optim.lr', (1e-4, 2e-4)),
  }[algo]
  for value in knob[1]:
    for seed in (0, 1):
      add(**{knob[0]: value, 'seed': seed})
