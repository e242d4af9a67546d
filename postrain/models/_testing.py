"""Random-weight models for tests and benchmarks, without a compiled init."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from postrain.models._config import TransformerConfig
from postrain.models._transformer import Transformer


def random_state(cfg: TransformerConfig, seed: int = 0, *,
                 weight_scale: float = 1.0):
  """`(graphdef, state)` of a `Transformer` with numpy-random parameters.

  Norm scales sit near their identity value and biases are non-zero, so every
  parameter matters in a comparison. Matrices get std
  `weight_scale / sqrt(fan_in)`; a scale of 2 gives peaked, varied logits
  (greedy paths that are not constant, ties unlikely).

  Args:
    cfg: the model config.
    seed: numpy seed.
    weight_scale: multiplier of the matrix standard deviation.
  """
  abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)

  def fill(path, x):
    name = jax.tree_util.keystr(path)
    noise = rng.standard_normal(x.shape)
    if 'scale' in name:
      value = 1.0 - cfg.norm_offset + 0.1 * noise
    elif 'bias' in name:
      value = 0.1 * noise
    else:
      value = weight_scale * noise / np.sqrt(x.shape[0])
    return jnp.asarray(value, x.dtype)

  return graphdef, jax.tree_util.tree_map_with_path(fill, state)
