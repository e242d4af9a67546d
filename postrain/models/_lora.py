"""LoRA: low-rank adapters on chosen projections of a `Transformer`.

A targeted kernel W (e.g. q [D, N, H]) gets `A` [in..., r] and `B`
[r, out...] and computes

  y = x W + (alpha / r) dropout(x) A B

(Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
arXiv:2106.09685). A ~ N(0, 1/fan_in), B = 0, so a fresh adapter leaves the
model unchanged. Adapters are `LoRAParam`s (an `nnx.Param` subclass) with the
kernel's logical axis names (the rank axis is replicated), so they shard
under the same rules.

Recipe (frozen base, adapters trained; what `config.lora` wires up):

  model, tok = postrain.models.load_hf(path, mesh=mesh)
  apply_lora(model, rank=8, alpha=16, targets=('q', 'v'), dropout=0.05)
  graphdef, state = nnx.split(model)
  adapters, base = split_lora(state)
  opt = postrain.train.make_optimizer(...)
  ts = postrain.train.init_state(adapters, opt, extra={'base': base})
  step = postrain.train.make_train_step(
      recipe_objective(graphdef, ...), opt,
      frozen_key='base', combine=combine_lora)
  ts, metrics = jax.jit(step, donate_argnums=0)(ts, batch, rng)
  # Sampling / eval: dropout off, same parameters.
  eval_graphdef = nnx.graphdef(nnx.view(model, deterministic=True))
  full = combine_lora(ts.params, ts.extra['base'])
  # Export: fold the adapters into the kernels.
  model = merge_lora(nnx.merge(graphdef, full))
  postrain.models.save_hf(model, tok, out_dir)

The objective receives the full state; gradients and optimiser state cover
`adapters` only, and a checkpoint of `ts.params` holds the adapters alone.
A frozen reference policy (DPO, KL terms) is the base itself: evaluate it as
`combine_lora(zero_adapters(ts.params), ts.extra['base'])`, with no second
copy of the weights.
"""

import math
from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from postrain.models._transformer import Transformer

# Target name -> (sub-module of a block, number of input axes of the kernel).
TARGETS = {
    'q': ('attn', 1),
    'k': ('attn', 1),
    'v': ('attn', 1),
    'o': ('attn', 2),
    'gate': ('mlp', 1),
    'up': ('mlp', 1),
    'down': ('mlp', 1),
}
# peft / HF module names accepted as aliases.
ALIASES = {'q_proj': 'q', 'k_proj': 'k', 'v_proj': 'v', 'o_proj': 'o',
           'gate_proj': 'gate', 'up_proj': 'up', 'down_proj': 'down'}


class LoRAParam(nnx.Param):
  """An adapter matrix: trainable while the base `nnx.Param`s are frozen."""


class LoRARng(nnx.Variable):
  """The dropout key of one adapter; `combine_lora(..., rng)` reseeds it."""


def _names(kernel: nnx.Variable) -> tuple:
  meta = kernel.get_metadata()
  names = meta.get('out_sharding') or meta.get('sharding_names')
  return tuple(names) if names else (None,) * kernel.ndim


class LoRA(nnx.Module):
  """`(alpha / r) dropout(x) A B` for one kernel of shape in... + out...."""

  def __init__(self, kernel: nnx.Variable, num_in: int, *, rank: int,
               alpha: float, dropout: float, key: jax.Array, dtype: str):
    shape, names = kernel.shape, _names(kernel)
    in_shape, out_shape = shape[:num_in], shape[num_in:]
    key_a, key_rng = jax.random.split(key)
    std = math.prod(in_shape) ** -0.5
    init_a = nnx.with_partitioning(nnx.initializers.normal(std),
                                   names[:num_in] + (None,),
                                   eager_sharding=False)
    init_b = nnx.with_partitioning(nnx.initializers.zeros,
                                   (None,) + names[num_in:],
                                   eager_sharding=False)
    pd = kernel.dtype
    self.a = LoRAParam(init_a(key_a, in_shape + (rank,), pd))
    self.b = LoRAParam(init_b(None, (rank,) + out_shape, pd))
    if dropout > 0:
      self.rng = LoRARng(key_rng)
    self.scale = alpha / rank
    self.rate = dropout
    self.num_in = num_in
    self.dtype = dtype
    self.deterministic = False

  def set_view(self, deterministic: bool | None = None):
    """`nnx.view(model, deterministic=True)` turns dropout off."""
    if deterministic is not None:
      self.deterministic = deterministic

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.rate > 0 and not self.deterministic:
      keep = jax.random.bernoulli(self.rng[...], 1.0 - self.rate, x.shape)
      # Inverted dropout: E[branch] is the deterministic branch.
      x = jnp.where(keep, x / (1.0 - self.rate), 0).astype(x.dtype)
    dt = self.dtype
    xa = jnp.tensordot(x, self.a[...].astype(dt), axes=self.num_in)
    return jnp.tensordot(xa, self.b[...].astype(dt), axes=1) * jnp.asarray(
        self.scale, dt)

  def delta(self) -> jax.Array:
    """`(alpha / r) A B` in the kernel's shape, float32."""
    a = self.a[...].astype(jnp.float32)
    b = self.b[...].astype(jnp.float32)
    return jnp.tensordot(a, b, axes=1) * self.scale


def _targets(targets: Sequence[str]) -> tuple[str, ...]:
  out = tuple(ALIASES.get(t, t) for t in targets)
  bad = [t for t in out if t not in TARGETS]
  if bad or not out:
    raise ValueError(f'LoRA targets {list(targets)}: unknown {bad}; valid: '
                     f'{sorted(TARGETS)} or {sorted(ALIASES)}.')
  return out


def apply_lora(
    model: Transformer,
    *,
    rank: int,
    alpha: float,
    targets: Sequence[str] = ('q', 'k', 'v', 'o'),
    dropout: float = 0.0,
    seed: int = 0,
) -> Transformer:
  """Adds adapters to `targets` in every block of `model`, in place.

  New adapters live on the default device: on a mesh, re-place the state
  with `postrain.sharding.tree_shardings(mesh, state)`.

  Args:
    model: the transformer.
    rank: r.
    alpha: the branch is scaled by alpha / r.
    targets: projection names: q k v o gate up down (or q_proj, ...).
    dropout: dropout rate on the adapter input during training.
    seed: seed of A's init and of the dropout keys.

  Returns:
    `model`, now holding `LoRAParam`s (and `LoRARng`s when dropout > 0).
  """
  targets = _targets(targets)
  if rank < 1:
    raise ValueError(f'LoRA rank={rank} must be >= 1.')
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f'LoRA dropout={dropout} must be in [0, 1).')
  key = jax.random.key(seed)
  for i, block in enumerate(model.layers):
    for part in ('attn', 'mlp'):
      module = getattr(block, part)
      if getattr(module, 'lora', None) is not None:
        raise ValueError(f'layer {i} {part} already has LoRA adapters.')
      adapters = {}
      for j, name in enumerate(targets):
        if TARGETS[name][0] != part:
          continue
        adapters[name] = LoRA(
            getattr(module, name), TARGETS[name][1], rank=rank, alpha=alpha,
            dropout=dropout, key=jax.random.fold_in(key, i * 16 + j),
            dtype=model.config.dtype)
      if adapters:
        module.lora = nnx.Dict(adapters)
  return model


def merge_lora(model: Transformer) -> Transformer:
  """Folds every adapter into its kernel, `W += (alpha / r) A B`; in place.

  Returns:
    `model`, without adapters (ready for `save_hf`).
  """
  for block in model.layers:
    for module in (block.attn, block.mlp):
      adapters = getattr(module, 'lora', None)
      if adapters is None:
        continue
      for name in list(adapters.keys()):
        kernel = getattr(module, name)
        merged = kernel[...].astype(jnp.float32) + adapters[name].delta()
        kernel.set_value(merged.astype(kernel.dtype))
      del module.lora
  return model


def split_lora(state: nnx.State) -> tuple[nnx.State, nnx.State]:
  """(adapters: the `LoRAParam`s, base: everything else) of a model state."""
  return nnx.split_state(state, LoRAParam, ...)


def combine_lora(adapters: nnx.State, base: nnx.State,
                 rng: jax.Array | None = None) -> nnx.State:
  """The full state; with `rng`, every `LoRARng` gets a fresh key from it.

  This is `make_train_step`'s `combine`: the step passes a new `rng` each
  call, so dropout masks differ between steps and between adapters.
  """
  if rng is not None:
    count = iter(range(1 << 30))

    def reseed(path, value):
      del path
      if isinstance(value, LoRARng):
        return value.replace(jax.random.fold_in(rng, next(count)))
      return value

    base = nnx.map_state(reseed, base)
  return nnx.merge_state(adapters, base)


def zero_adapters(adapters: nnx.State) -> nnx.State:
  """All-zero adapters: `combine_lora` of these computes the base model."""
  return jax.tree.map(jnp.zeros_like, adapters)
