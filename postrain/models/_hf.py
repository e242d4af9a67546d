"""Hugging Face checkpoints in and out: config.json + safetensors <-> NNX.

Supported `model_type`s: see `_hf_config.py`. HF stores a projection as `weight [out, in]`; postrain keeps
`[in, out]` with heads split out:

  q/k/v_proj.weight [N*H, D]  -> q/k/v [D, N, H]      (W.T, reshape)
  o_proj.weight     [D, N*H]  -> o [N, H, D]
  gate/up_proj      [F, D]    -> gate/up [D, F];  down_proj [D, F] -> [F, D]
  lm_head.weight    [V, D]    -> unembedding [D, V]

RoPE needs no permutation: both use the rotate-half layout. Gemma's norms
store `w` of `x * (1 + w)`, which is `norm_offset = 1`.

Loading reads one tensor at a time with `safetensors.safe_open`, converts it
on the host and puts it with `jax.device_put` straight onto its final
sharding (the logical axis names of the parameter through
`postrain.sharding.RULES`), so the host holds one tensor beyond what the
devices hold.

Example:
  >>> model, tok = load_hf('/ckpt/Qwen2.5-0.5B', dtype='float32')
  >>> logits, _ = model(jnp.asarray([tok.encode('Hello')]))
  >>> save_hf(model, tok, '/tmp/out', max_shard_size=2**30)
"""

import json
import math
import os
from typing import Callable

from flax import nnx
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np
import safetensors
import safetensors.numpy

from postrain import sharding
from postrain.data import _chat
from postrain.models._config import TransformerConfig
from postrain.models._hf_config import config_from_hf
from postrain.models._hf_config import config_to_hf
from postrain.models._transformer import Transformer

# Buffers some checkpoints carry that are no parameters.
_IGNORED_SUFFIXES = ('rotary_emb.inv_freq',)

Convert = Callable[[np.ndarray], np.ndarray]


def _t(x):
  return x.T


def _identity(x):
  return x


def tensor_map(cfg: TransformerConfig) -> dict[tuple, tuple[str, Convert,
                                                             Convert]]:
  """postrain parameter path -> (HF tensor name, to_postrain, to_hf)."""
  d, n, k, h = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

  def heads(num):
    return (lambda w: w.T.reshape(d, num, h),
            lambda x: x.reshape(d, num * h).T)

  def bias(num):
    return (lambda b: b.reshape(num, h), lambda x: x.reshape(num * h))

  same = (_identity, _identity)
  out = {('embedding',): ('model.embed_tokens.weight', *same),
         ('final_norm', 'scale'): ('model.norm.weight', *same)}
  if not cfg.tie_embeddings:
    out[('unembedding',)] = ('lm_head.weight', _t, _t)
  norms = [('attn_norm', 'input_layernorm')]
  if cfg.post_norms:
    norms += [('attn_post_norm', 'post_attention_layernorm'),
              ('mlp_norm', 'pre_feedforward_layernorm'),
              ('mlp_post_norm', 'post_feedforward_layernorm')]
  else:
    norms += [('mlp_norm', 'post_attention_layernorm')]
  for i in range(cfg.num_layers):
    p = f'model.layers.{i}.'
    attn = ('layers', i, 'attn')
    for name, num in (('q', n), ('k', k), ('v', k)):
      out[attn + (name,)] = (f'{p}self_attn.{name}_proj.weight', *heads(num))
      if cfg.qkv_bias:
        out[attn + (f'{name}_bias',)] = (f'{p}self_attn.{name}_proj.bias',
                                         *bias(num))
    out[attn + ('o',)] = (f'{p}self_attn.o_proj.weight',
                          lambda w: w.T.reshape(n, h, d),
                          lambda x: x.reshape(n * h, d).T)
    if cfg.qk_norm:
      for name in ('q_norm', 'k_norm'):
        out[attn + (name, 'scale')] = (f'{p}self_attn.{name}.weight', *same)
    for name in ('gate', 'up', 'down'):
      out[('layers', i, 'mlp', name)] = (f'{p}mlp.{name}_proj.weight', _t, _t)
    for ours, theirs in norms:
      out[('layers', i, ours, 'scale')] = (f'{p}{theirs}.weight', *same)
  return out


def _weight_files(path: str) -> dict[str, str]:
  """HF tensor name -> safetensors file of a model directory."""
  index = os.path.join(path, 'model.safetensors.index.json')
  if os.path.isfile(index):
    with open(index) as f:
      weight_map = json.load(f)['weight_map']
    return {k: os.path.join(path, v) for k, v in weight_map.items()}
  single = os.path.join(path, 'model.safetensors')
  if not os.path.isfile(single):
    raise FileNotFoundError(f'{path}: neither model.safetensors nor '
                            'model.safetensors.index.json.')
  with safetensors.safe_open(single, 'numpy') as f:
    return {k: single for k in f.keys()}


def load_hf(
    path: str,
    *,
    dtype: str = 'float32',
    compute_dtype: str | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple[Transformer, _chat.ChatTokenizer]:
  """Loads a local HF model directory as a `Transformer` and its tokenizer.

  Args:
    path: directory with config.json, safetensors weights (one file or an
      index), tokenizer.json and optionally tokenizer_config.json (chat
      template, special tokens) and generation_config.json (stop ids).
    dtype: parameter dtype (checkpoint tensors are cast to it).
    compute_dtype: matmul dtype; None means `dtype`.
    mesh: place each parameter with the sharding its logical axis names get
      under `postrain.sharding.RULES`; None puts it on the default device.

  Returns:
    (model, tokenizer): `model(tokens [B, T])` returns `(logits [B, T, V],
    None)`; the tokenizer is a `postrain.data.ChatTokenizer`.

  Raises:
    ValueError: unsupported architecture, or tensors missing, unexpected or
      of the wrong shape (all named).
  """
  cfg = config_from_hf(path).replace(param_dtype=dtype,
                                     dtype=compute_dtype or dtype)
  files = _weight_files(path)
  names = tensor_map(cfg)
  wanted = {hf: ours for ours, (hf, _, _) in names.items()}
  present = {k for k in files if not k.endswith(_IGNORED_SUFFIXES)}
  missing, unexpected = set(wanted) - present, present - set(wanted)
  if missing or unexpected:
    raise ValueError(f'{path}: tensors missing: {sorted(missing)}; '
                     f'unexpected: {sorted(unexpected)}.')
  abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  shardings = None if mesh is None else sharding.tree_shardings(mesh, state)
  variables = dict(nnx.to_flat_state(state))
  targets = (None if shardings is None
             else dict(nnx.to_flat_state(shardings)))
  by_file = {}
  for hf_name, ours in wanted.items():
    by_file.setdefault(files[hf_name], []).append((hf_name, ours))
  for file, items in sorted(by_file.items()):
    with safetensors.safe_open(file, 'numpy') as f:
      for hf_name, ours in items:
        var = variables[ours]
        x = names[ours][1](f.get_tensor(hf_name))
        if x.shape != var.shape:
          raise ValueError(f'{hf_name}: shape {x.shape} after conversion, '
                           f'expected {var.shape} for {ours}.')
        x = x.astype(var.dtype, copy=False)
        target = None if targets is None else targets[ours].get_value()
        var.set_value(jax.device_put(x, target))
        del x
  return nnx.merge(graphdef, state), _chat.ChatTokenizer(path)


def _host_array(x: jax.Array, dtype) -> np.ndarray:
  if not x.is_fully_addressable:
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.ascontiguousarray(np.asarray(jax.device_get(x)).astype(dtype))


def save_hf(
    model: Transformer,
    tokenizer: _chat.ChatTokenizer,
    path: str,
    *,
    max_shard_size: int = 2**32,
    dtype: str | None = None,
) -> None:
  """Writes `model` and `tokenizer` as an HF directory transformers loads.

  Writes config.json, generation_config.json (bos/eos/pad, stop ids),
  tokenizer files (tokenizer.json, tokenizer_config.json with the chat
  template), and the weights: model.safetensors, or shards
  `model-0000i-of-0000n.safetensors` of at most `max_shard_size` bytes
  (a larger single tensor gets its own shard) plus
  model.safetensors.index.json. Tensors are fetched one at a time; in a
  multi-process run every process gathers them and process 0 writes.

  Args:
    model: a `Transformer` without LoRA adapters (`merge_lora` first).
    tokenizer: a `postrain.data.ChatTokenizer`.
    path: output directory (created).
    max_shard_size: bytes per weight file.
    dtype: tensor dtype in the files; None keeps the parameter dtype.
  """
  if not isinstance(tokenizer, _chat.ChatTokenizer):
    raise TypeError(f'save_hf needs a postrain.data.ChatTokenizer, got '
                    f'{type(tokenizer).__name__}; load one with '
                    'ChatTokenizer(tokenizer_dir).')
  cfg = model.config
  dtype = jnp.dtype(dtype or cfg.param_dtype)
  names = tensor_map(cfg)
  state = nnx.to_flat_state(nnx.state(model))
  extra = [p for p, _ in state if p not in names]
  if extra:
    raise ValueError(f'parameters {extra[:4]} have no HF name (LoRA '
                     'adapters? call postrain.models.merge_lora first).')
  ids = dict(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
             pad_token_id=tokenizer.pad_id)
  hf_config = config_to_hf(cfg, **ids)
  hf_config['torch_dtype'] = dtype.name
  shards, size = [[]], 0
  for p, var in state:
    nbytes = math.prod(var.shape) * dtype.itemsize
    if shards[-1] and size + nbytes > max_shard_size:
      shards.append([])
      size = 0
    shards[-1].append((p, var))
    size += nbytes
  write = jax.process_index() == 0
  if write:
    os.makedirs(path, exist_ok=True)
  weight_map, total = {}, 0
  for i, shard in enumerate(shards):
    file = ('model.safetensors' if len(shards) == 1 else
            f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors')
    tensors = {}
    for p, var in shard:
      hf_name, _, to_hf = names[p]
      tensors[hf_name] = np.ascontiguousarray(
          to_hf(_host_array(var[...], dtype)))
      weight_map[hf_name] = file
      total += tensors[hf_name].nbytes
    if write:
      safetensors.numpy.save_file(tensors, os.path.join(path, file),
                                  metadata={'format': 'pt'})
    del tensors
  if not write:
    return
  if len(shards) > 1:
    index = dict(metadata=dict(total_size=total), weight_map=weight_map)
    _write_json(os.path.join(path, 'model.safetensors.index.json'), index)
  _write_json(os.path.join(path, 'config.json'), hf_config)
  generation = {k: v for k, v in ids.items() if v is not None}
  generation['eos_token_id'] = list(tokenizer.stop_ids)
  _write_json(os.path.join(path, 'generation_config.json'), generation)
  tokenizer.save(path)


def _write_json(file: str, obj) -> None:
  with open(file, 'w') as f:
    json.dump(obj, f, indent=2)
