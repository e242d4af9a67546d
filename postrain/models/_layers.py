"""Transformer building blocks: RMSNorm, RoPE, attention, gated MLP, block.

Shapes: B batch, T new tokens, S keys (cache length or T), D model, F hidden,
N query heads, K kv heads, H head dim, G = N // K query heads per kv head.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp

from postrain import sharding
from postrain.models._config import TransformerConfig

# Big but finite: an all-masked softmax row (padding) stays finite (uniform).
_MASK_VALUE = -1e30


def param(key, init, shape, names, dtype) -> nnx.Param:
  """A parameter annotated with logical axis names (see sharding.RULES)."""
  # eager_sharding=False: names are metadata only, so modules build without a
  # mesh; the train code maps them to shardings with sharding.logical_to_spec.
  init = nnx.with_partitioning(init, names, eager_sharding=False)
  return nnx.Param(init(key, shape, jnp.dtype(dtype)))


def dense_init(fan_in: int):
  return nnx.initializers.normal(stddev=fan_in**-0.5)


class RMSNorm(nnx.Module):
  """`x / rms(x) * (w + offset)` over the last axis, in float32."""

  def __init__(self, dim: int, cfg: TransformerConfig):
    init = nnx.initializers.constant(1.0 - cfg.norm_offset)
    self.scale = param(None, init, (dim,), ('norm',), cfg.param_dtype)
    self.eps = cfg.norm_eps
    self.offset = cfg.norm_offset

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)  # why: variance of bf16 loses precision.
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(var + self.eps)
    y = y * (self.scale[...].astype(jnp.float32) + self.offset)
    return y.astype(x.dtype)


def rope_frequencies(head_dim: int, theta: float, scaling) -> jax.Array:
  """Inverse frequencies [H/2] of RoPE, with optional linear/llama3 scaling.

  Llama-3 scaling (Meta's `apply_scaling`): wavelengths longer than
  `orig / low` are divided by `factor`, shorter than `orig / high` kept, and
  the band between interpolated smoothly.
  """
  inv = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, jnp.float32) / head_dim))
  if scaling is None:
    return inv
  if scaling[0] == 'linear':
    return inv / scaling[1]
  _, factor, low, high, orig = scaling
  wavelen = 2 * math.pi / inv
  smooth = (orig / wavelen - low) / (high - low)
  mid = (1 - smooth) * inv / factor + smooth * inv
  out = jnp.where(wavelen > orig / low, inv / factor, inv)
  is_mid = (wavelen >= orig / high) & (wavelen <= orig / low)
  return jnp.where(is_mid, mid, out)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq) -> jax.Array:
  """Rotates [B, T, N, H] by positions [B, T] (HF 'rotate_half' layout)."""
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B T H/2]
  sin = jnp.sin(angles)[:, :, None, :]
  cos = jnp.cos(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def project(module: nnx.Module, name: str, x: jax.Array, eq: str):
  """`einsum(eq, x, W)` for the kernel `W = module.<name>`, compute dtype.

  When `postrain.models.apply_lora` gave the module an adapter for `name`
  (in `module.lora`), its low-rank branch is added: `x W + s x A B`.
  """
  dt = module.cfg.dtype
  y = jnp.einsum(eq, x, getattr(module, name)[...].astype(dt))
  adapters = getattr(module, 'lora', None)
  if adapters is not None and name in adapters:
    y = y + adapters[name](x)
  return y


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
  """`cap * tanh(x / cap)`; identity when cap is None."""
  return x if cap is None else cap * jnp.tanh(x / cap)


def attention_mask(q_seg, q_slot, q_pos, k_seg, k_slot, k_pos, window):
  """Boolean [B, T, S]: same segment, causal in slot order, within window.

  Causality uses slot order (order of arrival), not positions, because
  positions restart in every packed segment.
  """
  mask = q_seg[:, :, None] == k_seg[:, None, :]
  mask &= q_slot[:, :, None] >= k_slot[:, None, :]
  if window is not None:
    mask &= (q_pos[:, :, None] - k_pos[:, None, :]) < window
  return mask


class Attention(nnx.Module):
  """Grouped-query attention with RoPE and optional QK-norm and soft-cap."""

  def __init__(self, cfg: TransformerConfig, layer: int, *, rngs: nnx.Rngs):
    d, n, k, h = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    pd = cfg.param_dtype
    init = dense_init(d)
    # One key per module: an Rngs draw is slow to trace (20 ms), a split not.
    key = iter(jax.random.split(rngs.params(), 4))
    self.q = param(
        next(key), init, (d, n, h), ('embed', 'heads', 'head_dim'), pd
    )
    kv_names = ('embed', 'kv_heads', 'head_dim')
    self.k = param(next(key), init, (d, k, h), kv_names, pd)
    self.v = param(next(key), init, (d, k, h), kv_names, pd)
    out_names = ('heads', 'head_dim', 'embed')
    self.o = param(next(key), dense_init(n * h), (n, h, d), out_names, pd)
    if cfg.qkv_bias:
      zeros = nnx.initializers.zeros
      self.q_bias = param(None, zeros, (n, h), ('heads', 'head_dim'), pd)
      self.k_bias = param(None, zeros, (k, h), ('kv_heads', 'head_dim'), pd)
      self.v_bias = param(None, zeros, (k, h), ('kv_heads', 'head_dim'), pd)
    if cfg.qk_norm:
      self.q_norm = RMSNorm(h, cfg)
      self.k_norm = RMSNorm(h, cfg)
    local = cfg.is_local_layer(layer)
    self.window = cfg.sliding_window if local else None
    theta = cfg.rope_theta
    if local and cfg.rope_local_theta is not None:
      theta = cfg.rope_local_theta
    self.inv_freq = (h, theta, None if local else cfg.rope_scaling)
    self.cfg = cfg

  def _project(self, x, name):
    y = project(self, name, x, 'BTD,DNH->BTNH')
    if self.cfg.qkv_bias:
      y = y + getattr(self, name + '_bias')[...].astype(self.cfg.dtype)
    return y

  def __call__(self, x, positions, segment_ids, cache):
    """Attends x [B, T, D]; returns ([B, T, D], updated layer cache or None).

    Args:
      x: residual stream input (already normed) in the compute dtype.
      positions: int32 [B, T] RoPE positions.
      segment_ids: int32 [B, T]; keys and queries match only within a segment.
      cache: None, or dict with 'k', 'v' [B, S, K, H], 'segment_ids',
        'positions' [B, S] (already holding this call's tokens) and 'index',
        the slot of x's first token.
    """
    cfg = self.cfg
    q, k, v = (self._project(x, n) for n in ('q', 'k', 'v'))
    if cfg.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    inv_freq = rope_frequencies(*self.inv_freq)
    q = apply_rope(q, positions, inv_freq)
    k = apply_rope(k, positions, inv_freq)
    b, t = positions.shape
    slots = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    if cache is None:
      new_cache = None
      k_seg, k_pos, k_slot, q_slot = segment_ids, positions, slots, slots
    else:
      start = (0, cache['index'], 0, 0)
      k = jax.lax.dynamic_update_slice(
          cache['k'], k.astype(cache['k'].dtype), start
      )
      v = jax.lax.dynamic_update_slice(
          cache['v'], v.astype(cache['v'].dtype), start
      )
      new_cache = dict(k=k, v=v)
      k_seg, k_pos = cache['segment_ids'], cache['positions']
      s = k.shape[1]
      k_slot = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
      q_slot = slots + cache['index']
    mask = attention_mask(
        segment_ids, q_slot, positions, k_seg, k_slot, k_pos, self.window
    )
    out = self._attend(q, k.astype(cfg.dtype), v.astype(cfg.dtype), mask)
    out = project(self, 'o', out, 'BTNH,NHD->BTD')
    return out, new_cache

  def _attend(self, q, k, v, mask):
    """Softmax attention in float32; q [B T N H], k/v [B S K H]."""
    cfg = self.cfg
    b, t, n, h = q.shape
    kh = k.shape[2]
    scale = cfg.query_scale if cfg.query_scale is not None else h**-0.5
    q = (q * scale).reshape(b, t, kh, n // kh, h)
    logits = jnp.einsum(
        'BTKGH,BSKH->BKGTS', q, k, preferred_element_type=jnp.float32
    )
    logits = softcap(logits, cfg.attn_logit_softcap)
    logits = jnp.where(mask[:, None, None], logits, _MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(cfg.dtype)
    out = jnp.einsum('BKGTS,BSKH->BTKGH', probs, v)
    return out.reshape(b, t, n, h)


class MLP(nnx.Module):
  """Gated MLP: `down(act(gate(x)) * up(x))`; SwiGLU or GeGLU (tanh)."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    d, f, pd = cfg.embed_dim, cfg.hidden_dim, cfg.param_dtype
    k1, k2, k3 = jax.random.split(rngs.params(), 3)
    self.gate = param(k1, dense_init(d), (d, f), ('embed', 'mlp'), pd)
    self.up = param(k2, dense_init(d), (d, f), ('embed', 'mlp'), pd)
    self.down = param(k3, dense_init(f), (f, d), ('mlp', 'embed'), pd)
    self.cfg = cfg

  def __call__(self, x: jax.Array) -> jax.Array:
    gate = project(self, 'gate', x, 'BTD,DF->BTF')
    if self.cfg.activation == 'silu':
      gate = jax.nn.silu(gate)
    else:
      gate = jax.nn.gelu(gate, approximate=True)
    hidden = gate * project(self, 'up', x, 'BTD,DF->BTF')
    return project(self, 'down', hidden, 'BTF,FD->BTD')


class Block(nnx.Module):
  """Pre-norm residual block; with `post_norms` also Gemma's output norms."""

  def __init__(self, cfg: TransformerConfig, layer: int, *, rngs: nnx.Rngs):
    d = cfg.embed_dim
    self.attn_norm = RMSNorm(d, cfg)
    self.attn = Attention(cfg, layer, rngs=rngs)
    self.mlp_norm = RMSNorm(d, cfg)
    self.mlp = MLP(cfg, rngs=rngs)
    if cfg.post_norms:
      self.attn_post_norm = RMSNorm(d, cfg)
      self.mlp_post_norm = RMSNorm(d, cfg)
    self.post_norms = cfg.post_norms

  def __call__(self, x, positions, segment_ids, cache):
    y, cache = self.attn(self.attn_norm(x), positions, segment_ids, cache)
    if self.post_norms:
      y = self.attn_post_norm(y)
    x = x + y
    y = self.mlp(self.mlp_norm(x))
    if self.post_norms:
      y = self.mlp_post_norm(y)
    x = x + y
    return sharding.constrain(x, ('batch', 'length', 'act_embed')), cache
