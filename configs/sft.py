r"""Supervised fine-tuning of a tiny transformer on synthetic arithmetic.

The default (`tiny`) trains on the CPU in a few minutes and reports held-out
accuracy before and after:

  python -m experiments.run --config=configs/sft.py:tiny --workdir=runs/sft

Sweep (every point of `sweep` below, results table in ROOT/results.md):

  python -m experiments.sweep --config=configs/sft.py:tiny --workdir=runs/sweep

Override anything on the command line: `--config.optim.lr=1e-3`.

A real model from a local Hugging Face directory, LoRA rank 8, on JSONL
prompt/response pairs, exported back to `<workdir>/hf` at the end:

  python -m experiments.run --config=configs/sft.py:hf=/models/qwen,lora=8 \
      --config.data.jsonl_path=/data/pairs --workdir=runs/sft_qwen
The resulting checkpoint is the base model of the RL and TRICE recipes:
point their `init_from` at this run's workdir.
"""

import ml_collections

from configs import common


def get_config(arg=None):
  """`arg`: `tiny` (CPU minutes) or `base`; `hf=DIR` and `lora=RANK`."""
  arg = common.parse_arg(arg, size='tiny', hf='', lora=0)
  tiny = arg.size == 'tiny'
  c = ml_collections.ConfigDict()
  c.recipe = 'sft'
  c.seed = 0
  c.total_steps = 600 if tiny else 5000
  c.log_every = 20
  c.eval_every = 300 if tiny else 1000
  c.init_from = ''  # workdir of another run: start from its parameters

  # Any TransformerConfig field may be set here; it overrides the preset.
  c.model = ml_collections.ConfigDict(dict(
      preset='tiny', num_layers=2, embed_dim=128, hidden_dim=512,
      num_heads=4, num_kv_heads=4, head_dim=32, max_seq_len=128,
      dtype='float32'))

  c.data = ml_collections.ConfigDict(dict(
      task='arithmetic',  # or 'jsonl'
      tokenizer='char',  # or a local tokenizer.json / HF directory
      data_dir='',  # TFDS data dir; '' = <workdir>/../tfds
      jsonl_path='',  # task=jsonl: directory with train.jsonl, test.jsonl
      prompt_field='prompt',
      response_field='response',
      min_steps=1, max_steps=3, operand_max=9,
      num_train=20000, num_test=500,
      rationale=True,
      max_len=64,
      batch_size=32,
      packing=False,
      overflow='truncate',  # or 'error'
  ))

  c.loss = ml_collections.ConfigDict(dict(
      label_smoothing=0.0, z_loss=0.0, chunk_size=128))

  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', lr=3e-3, schedule='warmup_cosine', warmup_steps=30,
      decay_steps=0, end_lr=3e-5, b1=0.9, b2=0.95, weight_decay=0.01,
      grad_clip=1.0, grad_accum=1))

  c.eval = ml_collections.ConfigDict(dict(
      loss_batches=4, num_prompts=200, max_new_tokens=40, temperature=0.0,
      batch_size=100, num_samples_written=20))

  # LoRA adapters (rank 0 = off): only they are trained and checkpointed.
  c.lora = ml_collections.ConfigDict(dict(
      rank=arg.lora, alpha=2.0 * arg.lora, targets='q,k,v,o'))
  c.export_hf = bool(arg.hf)  # write <workdir>/hf at the end
  if arg.hf:  # architecture, weights and tokenizer from the HF directory
    c.model = ml_collections.ConfigDict(dict(hf_path=arg.hf,
                                             dtype='bfloat16'))
    c.data.update(task='jsonl', tokenizer='', max_len=512, batch_size=8)
    c.optim.update(lr=1e-4 if arg.lora else 1e-5, warmup_steps=20)
    c.eval.update(num_prompts=0, loss_batches=8)

  c.ckpt = ml_collections.ConfigDict(dict(every=200, keep=2, use_async=True))
  c.mesh = [('data', -1), ('fsdp', 1), ('tensor', 1)]
  if not tiny:
    c.model.update(num_layers=4, embed_dim=256, hidden_dim=1024,
                   num_heads=8, num_kv_heads=4, head_dim=32)
    c.data.update(min_steps=2, max_steps=4, num_train=200000)
  c.lock()
  return c


def sweep(add, arg=None):
  """Learning rate × label smoothing at the tiny size."""
  del arg
  for lr in (1e-3, 3e-3):
    for ls in (0.0, 0.1):
      add(**{'optim.lr': lr, 'loss.label_smoothing': ls})
