"""Shared pieces of the latent-rationale configs (experiments E1).

The base model (`rationale_base.py`) is pretrained on a noisy-rationale
arithmetic corpus with 1–4 steps; TRICE, STaR, RFT, ReST-EM, RAFT and
answer-only SFT then fine-tune it on questions of 3–4 steps given as
(question, answer) only. Every run of the comparison uses `model()` and
`finetune_data()` so that `init_from` fits.
"""

import ml_collections

SIZES = ('tiny', 'base')


def check_size(size: str):
  if size not in SIZES:
    raise KeyError(f'unknown size {size!r}; valid: {SIZES}.')


def model(size: str) -> ml_collections.ConfigDict:
  """The LM of every run: 2×128 on the CPU, 4×256 on an accelerator."""
  m = dict(preset='tiny', num_layers=2, embed_dim=128, hidden_dim=512,
           num_heads=4, num_kv_heads=4, head_dim=32, max_seq_len=128,
           dtype='float32')
  if size == 'base':
    m.update(num_layers=4, embed_dim=256, hidden_dim=1024, num_heads=8)
  return ml_collections.ConfigDict(m)


def finetune_data(size: str) -> ml_collections.ConfigDict:
  """E1's fine-tuning set: 3–4-step questions; `max_len` = prompt tokens."""
  return ml_collections.ConfigDict(dict(
      task='arithmetic',  # or 'gsm8k' (local JSONL in jsonl_path)
      tokenizer='char', data_dir='', jsonl_path='',
      min_steps=3, max_steps=4, operand_max=9,
      num_train=256 if size == 'tiny' else 2048,
      num_test=200 if size == 'tiny' else 1000,
      max_len=48))


def optim(lr: float, schedule: str = 'warmup_cosine'):
  return ml_collections.ConfigDict(dict(
      name='adamw', lr=lr, schedule=schedule, warmup_steps=5, decay_steps=0,
      end_lr=lr / 10, b1=0.9, b2=0.95, weight_decay=0.0, grad_clip=1.0,
      grad_accum=1))


def evaluation(size: str) -> ml_collections.ConfigDict:
  """Greedy accuracy on `num_prompts`; majority vote (self-consistency)
  over `vote_samples` samples on `vote_prompts` of them."""
  tiny = size == 'tiny'
  return ml_collections.ConfigDict(dict(
      num_prompts=200 if tiny else 1000, max_new_tokens=48,
      batch_size=100 if tiny else 500, num_samples_written=20,
      vote_prompts=50 if tiny else 500, vote_samples=8, loss_batches=2))


def common(c: ml_collections.ConfigDict, size: str, recipe: str):
  """Fills the keys every rationale run shares."""
  c.recipe = recipe
  c.seed = 0
  c.init_from = ''  # the workdir of the rationale_base run
  c.model = model(size)
  c.data = finetune_data(size)
  c.eval = evaluation(size)
  c.ckpt = ml_collections.ConfigDict(dict(every=50, keep=2, use_async=True))
  c.mesh = [('data', -1), ('fsdp', 1), ('tensor', 1)]
  return c


def real_model(c: ml_collections.ConfigDict, hf_path: str, lora: int):
  """A model from a local Hugging Face directory (architecture, weights,
  tokenizer), optionally with LoRA adapters of rank `lora`."""
  c.model = ml_collections.ConfigDict(dict(hf_path=hf_path, dtype='bfloat16'))
  c.data.tokenizer = ''  # the directory's own tokenizer
  c.lora = ml_collections.ConfigDict(dict(
      rank=lora, alpha=2.0 * lora, targets='q,k,v,o'))
