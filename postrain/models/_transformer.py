"""Decoder-only transformer LM (Flax NNX) with an explicit KV cache pytree.

Example:
  >>> cfg = TransformerConfig.preset('tiny')
  >>> model = Transformer(cfg, rngs=nnx.Rngs(0))
  >>> tokens = jnp.zeros((2, 5), jnp.int32)
  >>> positions = jnp.broadcast_to(jnp.arange(5), (2, 5))
  >>> logits, _ = model(tokens, positions)
  >>> logits.shape
  (2, 5, 64)
"""

import flax
from flax import nnx
import jax
import jax.numpy as jnp

from postrain import sharding
from postrain.models import _layers
from postrain.models._config import TransformerConfig


@flax.struct.dataclass
class Cache:
  """KV cache, passed explicitly in and out of the model.

  Slots fill left to right; all rows share the write `index`. A slot with
  segment id 0 is empty or padding and is never attended by real tokens.

  Attributes:
    k: per-layer keys, a tuple of L arrays [B, S, K, H].
    v: per-layer values, the same.
    positions: int32 [B, S] RoPE position of each slot (for sliding windows).
    segment_ids: int32 [B, S] segment of each slot, 0 = empty or padding.
    index: int32 [] next slot to write.
  """

  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  positions: jax.Array
  segment_ids: jax.Array
  index: jax.Array


def init_cache(
    config: TransformerConfig, batch_size: int, max_len: int, dtype=None
) -> Cache:
  """Returns an empty cache of S = max_len slots (dtype: compute dtype).

  The caller must not write past S: `jax.lax.dynamic_update_slice` would clamp
  the write index silently.
  """
  dtype = config.dtype if dtype is None else dtype
  shape = (batch_size, max_len, config.num_kv_heads, config.head_dim)
  zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
  return Cache(
      k=zeros,
      v=zeros,
      positions=jnp.zeros((batch_size, max_len), jnp.int32),
      segment_ids=jnp.zeros((batch_size, max_len), jnp.int32),
      index=jnp.zeros((), jnp.int32),
  )


class Transformer(nnx.Module):
  """Llama / Qwen2 / Gemma-3 style decoder LM; holds parameters only."""

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    cfg = config
    d, v, pd = cfg.embed_dim, cfg.vocab_size, cfg.param_dtype
    self.config = cfg
    self.embedding = _layers.param(
        rngs.params(), _layers.dense_init(d), (v, d), ('vocab', 'embed'), pd
    )
    self.layers = nnx.List(
        [_layers.Block(cfg, i, rngs=rngs) for i in range(cfg.num_layers)]
    )
    self.final_norm = _layers.RMSNorm(d, cfg)
    if not cfg.tie_embeddings:
      self.unembedding = _layers.param(
          rngs.params(), _layers.dense_init(d), (d, v), ('embed', 'vocab'), pd
      )

  def features(
      self,
      tokens: jax.Array,
      positions: jax.Array | None = None,
      *,
      segment_ids: jax.Array | None = None,
      cache: Cache | None = None,
  ) -> tuple[jax.Array, Cache | None]:
    """Hidden states after the final norm.

    Args:
      tokens: int32 [B, T].
      positions: int32 [B, T] RoPE positions (restart per packed segment);
        None means 0, 1, ..., T - 1 in every row (allowed without a cache).
      segment_ids: int32 [B, T]; 1, 2, ... for packed sequences, 0 for
        padding. A token attends to earlier tokens of its own segment only.
        None means one segment per row.
      cache: None for a full-sequence forward, else a `Cache` whose slots
        [index, index + T) receive this call's keys and values.

    Returns:
      (hidden [B, T, D] in the compute dtype, updated cache or None).
    """
    cfg = self.config
    if positions is None:
      if cache is not None:
        raise ValueError('positions are required with a cache.')
      positions = jnp.broadcast_to(
          jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape
      )
    if segment_ids is None:
      segment_ids = jnp.ones_like(tokens, dtype=jnp.int32)
    x = jnp.take(self.embedding[...], tokens, axis=0).astype(cfg.dtype)
    if cfg.scale_embeddings:
      x = x * jnp.asarray(cfg.embed_dim**0.5, cfg.dtype)
    x = sharding.constrain(x, ('batch', 'length', 'act_embed'))
    shared = None
    if cache is not None:
      start = (0, cache.index)
      shared = dict(
          index=cache.index,
          positions=jax.lax.dynamic_update_slice(
              cache.positions, positions.astype(jnp.int32), start
          ),
          segment_ids=jax.lax.dynamic_update_slice(
              cache.segment_ids, segment_ids.astype(jnp.int32), start
          ),
      )
    ks, vs = [], []
    for i, block in enumerate(self.layers):
      layer_cache = None
      if cache is not None:
        layer_cache = dict(shared, k=cache.k[i], v=cache.v[i])
      x, layer_cache = block(x, positions, segment_ids, layer_cache)
      if cache is not None:
        ks.append(layer_cache['k'])
        vs.append(layer_cache['v'])
    x = self.final_norm(x)
    if cache is None:
      return x, None
    new_cache = Cache(
        k=tuple(ks),
        v=tuple(vs),
        positions=shared['positions'],
        segment_ids=shared['segment_ids'],
        index=cache.index + tokens.shape[1],
    )
    return x, new_cache

  def output_kernel(self) -> jax.Array:
    """[D, V] output projection: the transposed embedding when tied."""
    if self.config.tie_embeddings:
      return self.embedding[...].T
    return self.unembedding[...]

  def unembed(self, hidden: jax.Array) -> jax.Array:
    """float32 logits [B, T, V] = softcap(hidden @ output_kernel())."""
    kernel = self.output_kernel().astype(self.config.dtype)
    logits = jnp.einsum(
        'BTD,DV->BTV', hidden, kernel, preferred_element_type=jnp.float32
    )
    return _layers.softcap(logits, self.config.final_logit_softcap)

  def __call__(
      self,
      tokens: jax.Array,
      positions: jax.Array | None = None,
      *,
      segment_ids: jax.Array | None = None,
      cache: Cache | None = None,
  ) -> tuple[jax.Array, Cache | None]:
    """`features` then `unembed`: (float32 logits [B, T, V], cache)."""
    hidden, cache = self.features(
        tokens, positions, segment_ids=segment_ids, cache=cache
    )
    return self.unembed(hidden), cache
