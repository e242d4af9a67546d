"""Score networks (Flax NNX): an MLP for low-dimensional data and a small
convolutional net for small images.

Both map `(x [B, D], c_noise [B]) -> [B, D]`; what the output means (ε, x0,
score, v, or the F of Karras preconditioning) is the recipe's choice. The
noise level enters as sinusoidal features of `c_noise` (¼·ln σ under EDM
preconditioning), projected and added inside every block.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp

Array = jax.Array


def noise_embedding(c_noise: Array, dim: int, *,
                    max_period: float = 1e4) -> Array:
  """Transformer-style sinusoidal features of a scalar per example, [B, dim].

  Frequencies run geometrically from 1 to 1/max_period, applied to
  1000·c_noise (as in the EDM / DDPM code) so that ¼·ln σ spans many periods.
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / half)
  arg = 1000.0 * c_noise[:, None].astype(jnp.float32) * freqs
  return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], -1)


class ScoreMLP(nnx.Module):
  """Residual MLP with a noise embedding added to every hidden layer.

  Args:
    dim: data dimension D.
    hidden: width of the hidden layers.
    depth: number of residual blocks.
    embed_dim: size of the sinusoidal noise features.
    rngs: NNX rngs for initialisation.
  """

  def __init__(self, dim: int, *, hidden: int = 128, depth: int = 3,
               embed_dim: int = 32, rngs: nnx.Rngs):
    self.embed_dim = embed_dim
    self.embed = nnx.Linear(embed_dim, hidden, rngs=rngs)
    self.inp = nnx.Linear(dim, hidden, rngs=rngs)
    self.blocks = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs)
                            for _ in range(depth)])
    self.cond = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs)
                          for _ in range(depth)])
    self.out = nnx.Linear(hidden, dim, kernel_init=nnx.initializers.zeros,
                          rngs=rngs)

  def __call__(self, x: Array, c_noise: Array) -> Array:
    emb = nnx.silu(self.embed(noise_embedding(c_noise, self.embed_dim)))
    h = self.inp(x)
    for block, cond in zip(self.blocks, self.cond):
      h = h + block(nnx.silu(h + cond(emb)))
    return self.out(nnx.silu(h))


class ScoreConvNet(nnx.Module):
  """Small residual conv net for [B, H·W·C] images (e.g. 8×8 digits).

  Args:
    image_shape: (H, W, C) of the flattened input.
    channels: feature channels of every 3×3 convolution.
    depth: number of residual conv blocks.
    embed_dim: size of the sinusoidal noise features.
    rngs: NNX rngs.
  """

  def __init__(self, image_shape: tuple[int, int, int], *, channels: int = 32,
               depth: int = 3, embed_dim: int = 32, rngs: nnx.Rngs):
    self.image_shape = tuple(image_shape)
    self.embed_dim = embed_dim
    c_in = image_shape[-1]
    conv = lambda a, b, **kw: nnx.Conv(a, b, kernel_size=(3, 3), rngs=rngs,
                                       **kw)
    self.embed = nnx.Linear(embed_dim, channels, rngs=rngs)
    self.inp = conv(c_in, channels)
    self.blocks = nnx.List([conv(channels, channels) for _ in range(depth)])
    self.cond = nnx.List([nnx.Linear(channels, channels, rngs=rngs)
                          for _ in range(depth)])
    self.norms = nnx.List([nnx.GroupNorm(channels, num_groups=8, rngs=rngs)
                           for _ in range(depth)])
    self.out = conv(channels, c_in, kernel_init=nnx.initializers.zeros)

  def __call__(self, x: Array, c_noise: Array) -> Array:
    b = x.shape[0]
    emb = nnx.silu(self.embed(noise_embedding(c_noise, self.embed_dim)))
    h = self.inp(x.reshape(b, *self.image_shape))
    for block, cond, norm in zip(self.blocks, self.cond, self.norms):
      h = h + block(nnx.silu(norm(h) + cond(emb)[:, None, None, :]))
    return self.out(nnx.silu(h)).reshape(b, -1)
