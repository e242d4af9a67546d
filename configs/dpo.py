r"""DPO-family preference optimisation on a task with a known reward.

The default (`tiny`) pretrains π_ref (a 2-layer LM) on bigram strings of the
synthetic task (postrain/data/_preference_task.py: 4-letter strings over
'abcdefgh', reward #d − 0.5·[h in y]), then trains sigmoid DPO on
Bradley–Terry pairs drawn from it, and reports the exact KL(π*‖π_θ), the
exact expected reward and held-out ranking accuracies before and after:

  python -m experiments.run --config=configs/dpo.py:tiny --workdir=runs/dpo

Other variants: `--config.dpo.loss_type=ipo` (any key of
postrain.losses.PREFERENCE_LOSSES but d2o; simpo/orpo with
`--config.dpo.reference=none`, kto with `--config.dpo.reference=live`), or
`configs/dpo.py:loss=simpo`, which sets the matching reference. Online
iterative DPO (sample 8, best vs worst under the known reward, 3 rounds of
pairs per iteration at most): `configs/dpo.py:tiny,online`. A reward model
instead of the known reward: `--config.dpo.reward=runs/rm` (a
configs/reward_model.py run with the same `model`). Sweep (loss type × β,
results table in ROOT/results.md):

  python -m experiments.sweep --config=configs/dpo.py:tiny \
      --workdir=runs/dpo_sweep

Real pairs: `--config.data.task=jsonl --config.data.jsonl_path=DIR` (train.jsonl
and test.jsonl with prompt/chosen/rejected), `--config.dpo.ref_pretrain_steps=0
--config.init_from=runs/sft --config.dpo.reward='' --config.eval.exact=False`.
"""

import ml_collections

from configs import common

# Each loss type's β grid (β's meaning differs: τ for ipo; simpo and
# dpo_norm work on per-token log-probs, hence their larger β).
BETAS = {
    'sigmoid': (0.1, 0.5), 'ipo': (0.1, 0.5), 'dpo_norm': (1.0, 5.0),
    'simpo': (2.0, 5.0), 'kto': (0.1, 0.5), 'rpo': (0.1, 0.5),
}
# The reference mode each loss type needs (default: precomputed).
REFERENCE = {'simpo': 'none', 'orpo': 'none', 'kto': 'live'}


def get_config(arg=None):
  """`arg`: `tiny` (default), `online`, `loss=NAME`, comma-separated."""
  arg = common.parse_arg(arg, size='tiny', online=False, loss='sigmoid')
  if arg.size != 'tiny':
    raise KeyError(f'unknown size {arg.size!r}; valid: tiny.')
  c = ml_collections.ConfigDict()
  c.recipe = 'dpo'
  c.seed = 0
  c.total_steps = 8 if arg.online else 300  # online: one step = 1 iteration
  c.log_every = 1 if arg.online else 10
  c.eval_every = 2 if arg.online else 100
  c.init_from = ''  # workdir of another run (its params become π_ref)

  c.model = ml_collections.ConfigDict(dict(
      preset='tiny', num_layers=2, embed_dim=64, hidden_dim=256,
      num_heads=4, num_kv_heads=4, head_dim=16, max_seq_len=64,
      dtype='float32'))

  c.data = ml_collections.ConfigDict(dict(
      task='synthetic_preference',  # or 'jsonl'
      tokenizer='char',
      data_dir='',  # jsonl: TFDS data dir; '' = <workdir>/../tfds
      task_seed=0,  # synthetic: seed of the bigram model and the pairs
      num_train=4096, num_test=256,  # synthetic: pairs per split
      jsonl_path='',  # jsonl: directory with train.jsonl and test.jsonl
      prompt_field='prompt', chosen_field='chosen',
      rejected_field='rejected',
      max_len=16,  # row length (prompt + response + 2); prompt tokens online
      batch_size=32,  # pairs per step (offline)
  ))

  c.dpo = ml_collections.ConfigDict(dict(
      loss_type=arg.loss,  # a key of postrain.losses.PREFERENCE_LOSSES
      beta=0.1,
      loss_kwargs={},  # the kernel's other knobs, e.g. {'epsilon': 0.1}
      reference=REFERENCE.get(arg.loss, 'precomputed'),  # or live, none
      # π_ref: SFT steps on the synthetic task's bigram corpus (0: the
      # initial or init_from parameters are π_ref).
      ref_pretrain_steps=400, ref_pretrain_corpus=20000,
      ref_pretrain_lr=3e-3, ref_pretrain_batch=64,
      reward='known',  # eval/online scores: 'known', an RM workdir, or ''
      # Online / iterative DPO (specs/preference.md §25).
      online=arg.online,
      prompts_per_iteration=64,  # pairs per iteration
      samples_per_prompt=8,  # K
      epochs=2, num_minibatches=2,
      min_gap=0.0,  # δ_min; ties (gap 0) are always dropped
      online_reference='pi0',  # or 'pit' (the iteration's start policy)
      max_new_tokens=8, temperature=1.0,
      max_rounds=8,  # prompt batches drawn per iteration at most
  ))
  if arg.online:
    c.dpo.reference = 'none' if arg.loss in ('simpo', 'orpo') else 'live'

  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', lr=1e-3, schedule='warmup_cosine', warmup_steps=10,
      decay_steps=0, end_lr=1e-4, b1=0.9, b2=0.95, weight_decay=0.0,
      grad_clip=1.0, grad_accum=1))
  c.eval = ml_collections.ConfigDict(dict(
      num_pairs=256,  # held-out pairs
      num_prompts=1, num_samples=512,  # sampled responses per prompt
      exact=True))  # synthetic task: exact sums over all 4096 responses
  # LoRA adapters (rank 0 = off); π_ref is then the frozen base itself (no
  # second copy). Needs dpo.ref_pretrain_steps=0 and init_from / hf_path.
  c.lora = ml_collections.ConfigDict(dict(rank=0, alpha=16.0,
                                          targets='q,k,v,o'))
  c.ckpt = ml_collections.ConfigDict(dict(every=100, keep=2, use_async=True))
  c.mesh = [('data', -1), ('fsdp', 1), ('tensor', 1)]
  c.lock()
  return c


def sweep(add, arg=None):
  """Loss type × β at equal steps (E2b of specs/experiments.md)."""
  del arg
  for loss_type, betas in BETAS.items():
    for beta in betas:
      add(**{'dpo.loss_type': loss_type, 'dpo.beta': beta,
             'dpo.reference': REFERENCE.get(loss_type, 'precomputed')})
