"""The runner on a local Hugging Face model with LoRA, and LoRA under RL."""

import json
import os

import numpy as np
import pytest

from configs import rl as rl_config
from configs import sft as sft_config
from experiments import builders
from experiments import loop
from postrain import data
from postrain import models
from postrain import train


def _set(config, overrides):
  return builders.override(config, overrides, skip_missing=True)


def _hf_dir(path):
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  cfg = transformers.Qwen2Config(
      vocab_size=64, hidden_size=32, intermediate_size=48,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      head_dim=8, max_position_embeddings=64, bos_token_id=1,
      eos_token_id=4, pad_token_id=0, tie_word_embeddings=False)
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(cfg,
                                                        dtype=torch.float32)
  model.save_pretrained(path)
  data.write_tiny_tokenizer(path)
  return transformers, torch


def _jsonl(path):
  os.makedirs(path, exist_ok=True)
  pairs = [('what is two plus two ?', 'four .'), ('hello', 'hi , fine .'),
           ('how are you ?', 'fine thanks .'), ('bye', 'bye !')]
  for split, n in (('train', 64), ('test', 8)):
    with open(os.path.join(path, f'{split}.jsonl'), 'w') as f:
      for i in range(n):
        p, r = pairs[i % len(pairs)]
        f.write(json.dumps({'prompt': p, 'response': r}) + '\n')
  return path


def test_sft_with_lora_on_an_hf_model_trains_adapters_and_exports(
    fast, tmp_path):
  transformers, torch = _hf_dir(str(tmp_path / 'qwen'))
  config = _set(sft_config.get_config(f'hf={tmp_path / "qwen"},lora=4'), {
      **fast, 'data.jsonl_path': _jsonl(str(tmp_path / 'pairs')),
      'data.max_len': 16, 'model.dtype': 'float32', 'optim.lr': 1e-2})
  workdir = str(tmp_path / 'run')
  summary = loop.run(config, workdir)
  assert summary['after/loss'] < summary['before/loss']
  # The checkpoint's trained params are the adapters alone.
  ckpt = train.Checkpointer(os.path.join(workdir, 'checkpoints'), every=0)
  step_dir = os.path.join(workdir, 'checkpoints', str(ckpt.latest_step()))
  ckpt.close()
  paths = json.load(open(os.path.join(step_dir, 'params', '_METADATA')))[
      'tree_metadata']
  assert paths and all('lora' in p for p in paths)
  # The export loads in transformers and equals postrain's merged model.
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.join(workdir, 'hf'), dtype=torch.float32)
  model, _ = models.load_hf(os.path.join(workdir, 'hf'))
  tokens = np.random.default_rng(0).integers(5, 60, size=(2, 7))
  ours = np.asarray(model(tokens)[0])
  with torch.no_grad():
    theirs = hf(torch.as_tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  # Training moved the model away from the original weights.
  original, _ = models.load_hf(str(tmp_path / 'qwen'))
  assert np.abs(np.asarray(original(tokens)[0]) - ours).max() > 1e-3


def test_grpo_with_lora_uses_the_base_as_reference(fast, tmp_path):
  config = _set(rl_config.get_config('grpo'), {
      **fast, 'total_steps': 2, 'log_every': 1, 'eval_every': 2,
      'eval.num_prompts': 2, 'eval.pass_prompts': 1, 'ckpt.every': 1,
      'lora.rank': 2, 'rl.kl_coef': 0.1, 'optim.lr': 1e-2})
  workdir = str(tmp_path / 'grpo')
  loop.run(config, workdir)
  rows = [r for r in train.read_metrics(workdir) if 'loss' in r]
  assert all(np.isfinite(r['kl_ref']) for r in rows)
  # Step 1 starts at the reference (B = 0): KL exactly 0 there.
  assert rows[0]['kl_ref'] == pytest.approx(0.0, abs=1e-6)
  # No second copy of the weights: extra holds the base, not a reference.
  meta = os.path.join(workdir, 'checkpoints', '2', 'train', '_METADATA')
  paths = json.load(open(meta))['tree_metadata']
  assert any(p.startswith("('extra', 'base'") for p in paths)
  assert not any(p.startswith("('extra', 'ref'") for p in paths)
