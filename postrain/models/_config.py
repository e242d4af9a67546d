"""Architecture config of the decoder-only transformer, with named presets.

A `TransformerConfig` is a frozen dataclass: hashable, so it can be a static
jit argument, and separate from the experiment's ml_collections config.

Example:
  >>> cfg = TransformerConfig.preset('tiny')
  >>> cfg.num_params() > 0
  True
  >>> cfg.replace(num_layers=4).num_layers
  4
"""

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Shapes and numerics of a Llama / Qwen2 / Gemma-3 style decoder.

  Attributes:
    vocab_size: V.
    num_layers: L.
    embed_dim: D, the residual stream width.
    hidden_dim: F, the gated-MLP width.
    num_heads: N query heads.
    num_kv_heads: K key/value heads (grouped-query attention; N % K == 0).
    head_dim: H.
    max_seq_len: longest sequence the presets were trained for (metadata).
    rope_theta: RoPE base of global layers.
    rope_local_theta: RoPE base of sliding-window layers (Gemma-3: 1e4);
      None means `rope_theta`. Scaling never applies to local layers.
    rope_scaling: None, ('linear', factor) or ('llama3', factor,
      low_freq_factor, high_freq_factor, original_max_pos).
    norm_eps: RMSNorm epsilon.
    norm_offset: RMSNorm multiplies by `weight + norm_offset`; Gemma stores
      `weight` around 0 and uses offset 1. Weights init to `1 - offset`.
    qk_norm: RMSNorm over H on queries and keys (Gemma-3).
    qkv_bias: biases on the q/k/v projections (Qwen2).
    post_norms: extra RMSNorm on the attention and MLP outputs before the
      residual add (Gemma-3's post_attention / post_feedforward norms).
    activation: 'silu' (SwiGLU) or 'gelu_tanh' (GeGLU).
    attn_logit_softcap: `c * tanh(logits / c)` on attention logits, or None.
    final_logit_softcap: the same on the output logits, or None.
    tie_embeddings: output projection is the transposed embedding table.
    scale_embeddings: multiply embeddings by sqrt(D) (Gemma).
    query_scale: multiplier of q before q.k; None means 1/sqrt(H). Gemma-3
      uses query_pre_attn_scalar**-0.5.
    sliding_window: local attention span W (a query sees keys with
      `q_pos - k_pos < W`), or None for global attention everywhere.
    sliding_window_pattern: every `pattern`-th layer (1-based) is global, the
      others local; Gemma-3 uses 6 (5 local : 1 global), Gemma-2 2, and 0
      means that every layer is local (Mistral).
    param_dtype: dtype of the parameters.
    dtype: compute dtype of matmuls; softmax and norms run in float32.
  """

  vocab_size: int
  num_layers: int
  embed_dim: int
  hidden_dim: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  max_seq_len: int = 2048
  rope_theta: float = 10000.0
  rope_local_theta: float | None = None
  rope_scaling: tuple[Any, ...] | None = None
  norm_eps: float = 1e-6
  norm_offset: float = 0.0
  qk_norm: bool = False
  qkv_bias: bool = False
  post_norms: bool = False
  activation: str = 'silu'
  attn_logit_softcap: float | None = None
  final_logit_softcap: float | None = None
  tie_embeddings: bool = True
  scale_embeddings: bool = False
  query_scale: float | None = None
  sliding_window: int | None = None
  sliding_window_pattern: int = 1
  param_dtype: str = 'float32'
  dtype: str = 'bfloat16'

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f'num_heads={self.num_heads} must be a multiple of '
          f'num_kv_heads={self.num_kv_heads}.'
      )
    if self.activation not in ('silu', 'gelu_tanh'):
      raise ValueError(f'activation={self.activation!r}: silu or gelu_tanh.')
    if self.rope_scaling is not None and self.rope_scaling[0] not in (
        'linear',
        'llama3',
    ):
      raise ValueError(f'rope_scaling={self.rope_scaling!r}: unknown kind.')
    if self.sliding_window_pattern < 0:
      raise ValueError(
          f'sliding_window_pattern={self.sliding_window_pattern} must be >= 0.'
      )

  def replace(self, **kw) -> 'TransformerConfig':
    return dataclasses.replace(self, **kw)

  @classmethod
  def preset(cls, name: str) -> 'TransformerConfig':
    """Returns a named preset; see `PRESETS` for the names."""
    if name not in PRESETS:
      raise KeyError(f'unknown preset {name!r}; known: {sorted(PRESETS)}.')
    return PRESETS[name]

  def is_local_layer(self, layer: int) -> bool:
    """Whether layer `layer` (0-based) uses sliding-window attention."""
    if self.sliding_window is None:
      return False
    if self.sliding_window_pattern == 0:
      return True
    return (layer + 1) % self.sliding_window_pattern != 0

  def _layer_matmul_params(self) -> int:
    d, f, n, k, h = (
        self.embed_dim,
        self.hidden_dim,
        self.num_heads,
        self.num_kv_heads,
        self.head_dim,
    )
    return 2 * d * n * h + 2 * d * k * h + 3 * d * f

  def num_params(self) -> int:
    """Exact parameter count of `Transformer(self)`, embeddings included."""
    d, n, k, h = (
        self.embed_dim,
        self.num_heads,
        self.num_kv_heads,
        self.head_dim,
    )
    layer = self._layer_matmul_params()
    layer += (4 if self.post_norms else 2) * d
    layer += 2 * h if self.qk_norm else 0
    layer += (n + 2 * k) * h if self.qkv_bias else 0
    embed = self.vocab_size * d * (1 if self.tie_embeddings else 2)
    return embed + self.num_layers * layer + d

  def flops_per_token(self, seq_len: int) -> int:
    """Training FLOPs per token (forward + backward) at sequence length T.

    `6 * P_mm + sum_layers 12 * T_l * N * H`, where `P_mm` counts the matmul
    weights that each token multiplies: q/k/v/o and the gated MLP in every
    layer, plus the D x V output projection (tied or not; the embedding
    lookup is free). The attention term counts q.k and p.v at 2 FLOPs per
    multiply-add, times 3 for forward + backward, over the full T_l = T keys
    (the Kaplan / Chinchilla convention, no causal halving); sliding-window
    layers use T_l = min(T, W). Norms, softmax and RoPE are ignored.

    Args:
      seq_len: T, the training sequence length.

    Returns:
      FLOPs per token as an int.
    """
    p_mm = self.num_layers * self._layer_matmul_params()
    p_mm += self.embed_dim * self.vocab_size
    attn = 0
    for layer in range(self.num_layers):
      t = seq_len
      if self.is_local_layer(layer):
        t = min(seq_len, self.sliding_window)
      attn += 12 * t * self.num_heads * self.head_dim
    return 6 * p_mm + attn


PRESETS: dict[str, TransformerConfig] = {
    'tiny': TransformerConfig(
        vocab_size=64,
        num_layers=2,
        embed_dim=64,
        hidden_dim=128,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        max_seq_len=256,
        dtype='float32',
    ),
    # HF meta-llama/Llama-3.2-1B config.json.
    'llama-3.2-1b': TransformerConfig(
        vocab_size=128256,
        num_layers=16,
        embed_dim=2048,
        hidden_dim=8192,
        num_heads=32,
        num_kv_heads=8,
        head_dim=64,
        max_seq_len=131072,
        rope_theta=500000.0,
        rope_scaling=('llama3', 32.0, 1.0, 4.0, 8192),
        norm_eps=1e-5,
    ),
    # HF Qwen/Qwen2.5-0.5B config.json.
    'qwen2.5-0.5b': TransformerConfig(
        vocab_size=151936,
        num_layers=24,
        embed_dim=896,
        hidden_dim=4864,
        num_heads=14,
        num_kv_heads=2,
        head_dim=64,
        max_seq_len=32768,
        rope_theta=1000000.0,
        qkv_bias=True,
    ),
    # HF Qwen/Qwen2.5-1.5B config.json.
    'qwen2.5-1.5b': TransformerConfig(
        vocab_size=151936,
        num_layers=28,
        embed_dim=1536,
        hidden_dim=8960,
        num_heads=12,
        num_kv_heads=2,
        head_dim=128,
        max_seq_len=131072,
        rope_theta=1000000.0,
        qkv_bias=True,
    ),
    # HF google/gemma-3-1b-pt config.json (Gemma3ForCausalLM).
    'gemma-3-1b': TransformerConfig(
        vocab_size=262144,
        num_layers=26,
        embed_dim=1152,
        hidden_dim=6912,
        num_heads=4,
        num_kv_heads=1,
        head_dim=256,
        max_seq_len=32768,
        rope_theta=1000000.0,
        rope_local_theta=10000.0,
        norm_offset=1.0,
        qk_norm=True,
        post_norms=True,
        activation='gelu_tanh',
        scale_embeddings=True,
        query_scale=256**-0.5,
        sliding_window=512,
        sliding_window_pattern=6,
    ),
}
