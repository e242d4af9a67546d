"""Hugging Face checkpoints in and out: config.json + safetensors <-> NNX.

Supported `model_type`s: llama (3.x), qwen2 (2.5), qwen3, mistral, gemma2,
gemma3_text. HF stores a projection as `weight [out, in]`; postrain keeps
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

import dataclasses
import json
import math
import os
from typing import Any, Callable

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
from postrain.models._transformer import Transformer

ARCHITECTURES = {
    'llama': 'LlamaForCausalLM',
    'mistral': 'MistralForCausalLM',
    'qwen2': 'Qwen2ForCausalLM',
    'qwen3': 'Qwen3ForCausalLM',
    'gemma2': 'Gemma2ForCausalLM',
    'gemma3_text': 'Gemma3ForCausalLM',
}
_GEMMA = ('gemma2', 'gemma3_text')
# Family defaults of keys that transformers may leave out of config.json.
_DEFAULTS = {
    'llama': dict(tie_word_embeddings=False),
    'mistral': dict(tie_word_embeddings=False, sliding_window=4096),
    'qwen2': dict(tie_word_embeddings=False),
    'qwen3': dict(tie_word_embeddings=False),
    'gemma2': dict(
        tie_word_embeddings=True,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        query_pre_attn_scalar=256,
        sliding_window=4096,
    ),
    'gemma3_text': dict(
        tie_word_embeddings=True,
        query_pre_attn_scalar=256,
        sliding_window=4096,
        sliding_window_pattern=6,
        rope_theta=1e6,
        rope_local_base_freq=1e4,
    ),
}
_COMMON = dict(rms_norm_eps=1e-6, rope_theta=1e4, max_position_embeddings=2048)
# Buffers some checkpoints carry that are no parameters.
_IGNORED_SUFFIXES = ('rotary_emb.inv_freq',)
_ACTIVATIONS = {'silu': 'silu', 'gelu_pytorch_tanh': 'gelu_tanh',
                'gelu_tanh': 'gelu_tanh'}


def _read_json(path: str) -> dict[str, Any]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} does not exist.')
  with open(path) as f:
    return json.load(f)


def _rope_scaling(params: dict[str, Any] | None, where: str):
  """HF rope dict -> postrain's `rope_scaling` tuple (None for default)."""
  params = params or {}
  kind = params.get('rope_type', params.get('type', 'default'))
  if kind == 'default':
    return None
  if kind == 'linear':
    return ('linear', float(params['factor']))
  if kind == 'llama3':
    return ('llama3', float(params['factor']),
            float(params['low_freq_factor']),
            float(params['high_freq_factor']),
            int(params['original_max_position_embeddings']))
  raise ValueError(f'{where}: rope_type {kind!r} is not supported '
                   '(supported: default, linear, llama3).')


def _rope(c: dict[str, Any], model_type: str):
  """(rope_theta, rope_local_theta, rope_scaling) of an HF config."""
  params = c.get('rope_parameters')
  if params is None:  # transformers < 5 layout
    glob = dict(c.get('rope_scaling') or {}, rope_theta=c['rope_theta'])
    local = None
    if model_type == 'gemma3_text':
      local = {'rope_theta': c['rope_local_base_freq']}
  elif 'full_attention' in params:  # one dict per layer type
    glob, local = params['full_attention'], params.get('sliding_attention')
  else:
    glob, local = params, None
  scaling = _rope_scaling(glob, 'rope (global layers)')
  local_theta = None
  if local is not None:
    if _rope_scaling(local, 'rope (sliding layers)') is not None:
      raise ValueError('rope scaling on sliding-window layers is not '
                       'supported.')
    local_theta = float(local['rope_theta'])
  return float(glob['rope_theta']), local_theta, scaling


def _layer_types(c: dict[str, Any], model_type: str, num_layers: int):
  """(sliding_window, sliding_window_pattern) from HF layer types."""
  window = c.get('sliding_window')
  types = c.get('layer_types')
  if model_type in ('qwen2', 'qwen3') and c.get('use_sliding_window'):
    raise ValueError(f'{model_type}: use_sliding_window=true (sliding '
                     'layers from max_window_layers on) is not supported.')
  if types is None:
    if model_type == 'mistral' and window is not None:
      types = ['sliding_attention'] * num_layers
    elif model_type == 'gemma2':
      types = ['sliding_attention' if (i + 1) % 2 else 'full_attention'
               for i in range(num_layers)]
    elif model_type == 'gemma3_text':
      p = c['sliding_window_pattern']
      types = ['sliding_attention' if (i + 1) % p else 'full_attention'
               for i in range(num_layers)]
    else:
      types = ['full_attention'] * num_layers
  unknown = set(types) - {'sliding_attention', 'full_attention'}
  if unknown or len(types) != num_layers:
    raise ValueError(f'layer_types={types}: expected {num_layers} of '
                     'sliding_attention / full_attention.')
  local = [t == 'sliding_attention' for t in types]
  if not any(local):
    return None, 1
  if window is None:
    raise ValueError('layer_types has sliding layers but sliding_window is '
                     'null.')
  if all(local):
    return int(window), 0
  pattern = local.index(False) + 1
  if any(local[i] != bool((i + 1) % pattern) for i in range(num_layers)):
    raise ValueError(f'layer_types={types} is not "every k-th layer global"; '
                     'not supported.')
  return int(window), pattern


def config_from_hf(config: dict[str, Any] | str) -> TransformerConfig:
  """Maps an HF `config.json` (dict, file or directory) to a config.

  Args:
    config: the parsed config.json, or the path of it or of its directory.

  Returns:
    The `TransformerConfig` (float32 parameters, bfloat16 compute; `load_hf`
    sets both dtypes).

  Raises:
    ValueError: unsupported `model_type` or feature (named in the message).
  """
  if isinstance(config, str):
    if os.path.isdir(config):
      config = os.path.join(config, 'config.json')
    config = _read_json(config)
  model_type = config.get('model_type')
  if model_type not in ARCHITECTURES:
    raise ValueError(f'model_type {model_type!r} is not supported; supported: '
                     f'{sorted(ARCHITECTURES)}.')
  c = {**_COMMON, **_DEFAULTS[model_type],
       **{k: v for k, v in config.items() if v is not None or k in (
           'sliding_window', 'attn_logit_softcapping',
           'final_logit_softcapping')}}
  for key in ('attention_bias', 'mlp_bias'):
    if c.get(key) and model_type != 'qwen2':
      raise ValueError(f'{model_type}: {key}=true is not supported.')
  act_key = 'hidden_activation' if 'hidden_activation' in c else 'hidden_act'
  if c.get(act_key, 'silu') not in _ACTIVATIONS:
    raise ValueError(f'{act_key}={c[act_key]!r} is not supported; supported: '
                     f'{sorted(_ACTIVATIONS)}.')
  n, d, layers = (c['num_attention_heads'], c['hidden_size'],
                  c['num_hidden_layers'])
  theta, local_theta, scaling = _rope(c, model_type)
  window, pattern = _layer_types(c, model_type, layers)
  if scaling is not None and window is not None and local_theta is None:
    raise ValueError(f'{model_type}: rope scaling with sliding-window layers '
                     'that share it is not supported.')
  gemma = model_type in _GEMMA
  return TransformerConfig(
      vocab_size=c['vocab_size'],
      num_layers=layers,
      embed_dim=d,
      hidden_dim=c['intermediate_size'],
      num_heads=n,
      num_kv_heads=c.get('num_key_value_heads') or n,
      head_dim=c.get('head_dim') or d // n,
      max_seq_len=c['max_position_embeddings'],
      rope_theta=theta,
      rope_local_theta=local_theta,
      rope_scaling=scaling,
      norm_eps=float(c['rms_norm_eps']),
      norm_offset=1.0 if gemma else 0.0,
      qk_norm=model_type in ('qwen3', 'gemma3_text'),
      qkv_bias=model_type == 'qwen2',
      post_norms=gemma,
      activation=_ACTIVATIONS[c.get(act_key, 'silu')],
      attn_logit_softcap=c.get('attn_logit_softcapping') if gemma else None,
      final_logit_softcap=c.get('final_logit_softcapping') if gemma else None,
      tie_embeddings=bool(c['tie_word_embeddings']),
      scale_embeddings=gemma,
      query_scale=c['query_pre_attn_scalar'] ** -0.5 if gemma else None,
      sliding_window=window,
      sliding_window_pattern=pattern,
      param_dtype='float32',
      dtype='bfloat16',
  )


def _model_type(cfg: TransformerConfig) -> str:
  if cfg.post_norms:
    return 'gemma3_text' if cfg.qk_norm else 'gemma2'
  if cfg.qk_norm:
    return 'qwen3'
  if cfg.qkv_bias:
    return 'qwen2'
  if cfg.sliding_window is not None:
    return 'mistral'
  return 'llama'


def _rope_dict(scaling) -> dict[str, Any] | None:
  if scaling is None:
    return None
  if scaling[0] == 'linear':
    return dict(rope_type='linear', factor=scaling[1])
  _, factor, low, high, orig = scaling
  return dict(rope_type='llama3', factor=factor, low_freq_factor=low,
              high_freq_factor=high, original_max_position_embeddings=orig)


def _same(a: TransformerConfig, b: TransformerConfig) -> bool:
  for f in dataclasses.fields(a):
    x, y = getattr(a, f.name), getattr(b, f.name)
    if isinstance(x, float) and isinstance(y, float):
      if not math.isclose(x, y, rel_tol=1e-9):
        return False
    elif x != y:
      return False
  return True


def config_to_hf(cfg: TransformerConfig, **token_ids) -> dict[str, Any]:
  """The HF `config.json` dict of `cfg` (transformers < 5 keys, read by all).

  Args:
    cfg: the architecture.
    **token_ids: bos_token_id / eos_token_id / pad_token_id.

  Raises:
    ValueError: when no supported HF architecture computes what `cfg` does.
  """
  model_type = _model_type(cfg)
  gemma = model_type in _GEMMA
  out = dict(
      architectures=[ARCHITECTURES[model_type]],
      model_type=model_type,
      vocab_size=cfg.vocab_size,
      hidden_size=cfg.embed_dim,
      intermediate_size=cfg.hidden_dim,
      num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads,
      num_key_value_heads=cfg.num_kv_heads,
      head_dim=cfg.head_dim,
      max_position_embeddings=cfg.max_seq_len,
      rms_norm_eps=cfg.norm_eps,
      rope_theta=cfg.rope_theta,
      rope_scaling=_rope_dict(cfg.rope_scaling),
      tie_word_embeddings=cfg.tie_embeddings,
      torch_dtype=cfg.param_dtype,
      **token_ids,
  )
  act = {'silu': 'silu', 'gelu_tanh': 'gelu_pytorch_tanh'}[cfg.activation]
  out['hidden_activation' if gemma else 'hidden_act'] = act
  if gemma:
    out['hidden_act'] = act
    # transformers wants an int; a non-integral one fails the check below.
    out['query_pre_attn_scalar'] = round(
        (cfg.query_scale or cfg.head_dim**-0.5) ** -2)
    out['attn_logit_softcapping'] = cfg.attn_logit_softcap
    out['final_logit_softcapping'] = cfg.final_logit_softcap
  if model_type == 'gemma3_text':
    out['rope_local_base_freq'] = cfg.rope_local_theta or cfg.rope_theta
  if cfg.sliding_window is not None or gemma:
    out['sliding_window'] = cfg.sliding_window
    out['layer_types'] = [
        'sliding_attention' if cfg.is_local_layer(i) else 'full_attention'
        for i in range(cfg.num_layers)]
  if model_type in ('llama', 'mistral', 'qwen3'):
    out['attention_bias'] = False
  back = config_from_hf(out).replace(param_dtype=cfg.param_dtype,
                                     dtype=cfg.dtype)
  if not _same(back, cfg):
    diff = {f.name: (getattr(cfg, f.name), getattr(back, f.name))
            for f in dataclasses.fields(cfg)
            if getattr(cfg, f.name) != getattr(back, f.name)}
    raise ValueError(f'no HF architecture matches this config; as '
                     f'{model_type} these fields would change: {diff}.')
  return out


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
    weight_map = _read_json(index)['weight_map']
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
