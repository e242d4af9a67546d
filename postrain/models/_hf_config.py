"""HF `config.json` <-> `TransformerConfig` for the supported families.

Supported `model_type`s: llama (3.x), qwen2 (2.5), qwen3, mistral, gemma2,
gemma3_text. Both config layouts are read: transformers < 5 (`rope_theta`,
`rope_scaling`, `rope_local_base_freq`, `sliding_window_pattern`) and 5
(`rope_parameters`, per layer type for Gemma 3, and `layer_types`).
`config_to_hf` writes the < 5 keys, which every version reads, and checks
that reading them back gives the same config.

Example:
  >>> cfg = config_from_hf('/ckpt/Qwen2.5-0.5B')
  >>> cfg.qkv_bias, cfg.tie_embeddings
  (True, True)
"""

import dataclasses
import json
import math
import os
from typing import Any

from postrain.models._config import TransformerConfig

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
