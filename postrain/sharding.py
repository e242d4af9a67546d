"""One mesh and one short table of logical-axis rules.

Model code names *logical* axes ('batch', 'embed', 'mlp', ...). The table
below maps each to a mesh axis (or to nothing). The same model code thus runs
unsharded on one CPU, on 8 fake CPU devices in tests, and FSDP x tensor
parallel on a pod; only `config.mesh` changes.

Example:
  >>> mesh = make_mesh([('data', -1), ('fsdp', 1), ('tensor', 1)])
  >>> logical_to_spec(('batch', 'length'))
  PartitionSpec(('data', 'fsdp'), None)
"""

import contextlib
from collections.abc import Sequence

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

# postrain shards explicitly at the jit boundary (abstract init, then
# `jax.jit(init, out_shardings=...)`), so Flax's eager sharding, which needs a
# mesh at variable creation, is off.
nnx.use_eager_sharding(False)

MESH_AXES = ('data', 'fsdp', 'tensor')

# Logical axis -> mesh axis (or tuple of mesh axes, or None = replicated).
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ('batch', ('data', 'fsdp')),  # activations: batch over data-parallel axes
    ('length', None),
    ('act_embed', None),  # activations' model dim stays whole
    ('embed', 'fsdp'),  # parameters: sharded over fsdp (ZeRO-3)
    ('vocab', 'tensor'),
    ('mlp', 'tensor'),
    ('heads', 'tensor'),
    ('kv_heads', 'tensor'),
    ('head_dim', None),
    ('norm', None),
    ('layers', None),
    ('cache_length', None),
)


def make_mesh(
    spec: Sequence[tuple[str, int]], devices=None
) -> jax.sharding.Mesh:
  """Builds the mesh from `config.mesh`, e.g. `[('data', -1), ('fsdp', 2)]`.

  One size may be -1: it takes all devices left over. Axes missing from `spec`
  get size 1, so the rules table always finds every mesh axis.

  Args:
    spec: (axis name, size) pairs; names from `MESH_AXES`.
    devices: devices to use (default: all).

  Returns:
    A `jax.sharding.Mesh` with axes `MESH_AXES`, all of explicit type Auto.
  """
  devices = jax.devices() if devices is None else devices
  sizes = dict(spec)
  unknown = set(sizes) - set(MESH_AXES)
  if unknown:
    raise ValueError(
        f'config.mesh: unknown axes {sorted(unknown)}; valid: {MESH_AXES}.'
    )
  n_free = sum(1 for s in sizes.values() if s == -1)
  if n_free > 1:
    raise ValueError('config.mesh: at most one axis may have size -1.')
  fixed = 1
  for s in sizes.values():
    fixed *= s if s != -1 else 1
  if len(devices) % fixed:
    raise ValueError(
        f'config.mesh={list(spec)} needs a multiple of {fixed} devices; '
        f'there are {len(devices)}.'
    )
  shape = []
  for name in MESH_AXES:
    size = sizes.get(name, 1)
    shape.append(len(devices) // fixed if size == -1 else size)
  total = 1
  for s in shape:
    total *= s
  if total != len(devices):
    raise ValueError(
        f'config.mesh={list(spec)} uses {total} devices; there are '
        f'{len(devices)}. Give one axis size -1 to take the rest.'
    )
  return jax.make_mesh(
      tuple(shape),
      MESH_AXES,
      axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
      devices=devices,
  )


def logical_to_spec(names: Sequence[str | None] | None, rules=RULES) -> P:
  """Maps a tuple of logical axis names to a mesh `PartitionSpec`."""
  if names is None:
    return P()
  table = dict(rules)
  out, used = [], set()
  for name in names:
    axis = table.get(name) if name is not None else None
    if name is not None and name not in table:
      raise KeyError(f'logical axis {name!r} has no rule; add it to RULES.')
    # A mesh axis may shard only one array dimension.
    axes = (axis,) if isinstance(axis, str) else tuple(axis or ())
    axes = tuple(a for a in axes if a not in used)
    used.update(axes)
    out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return P(*out)


def logical_sharding(mesh, names, rules=RULES) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(names, rules))


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """`with_sharding_constraint` by logical names; a no-op outside a mesh.

  Model code calls this on key activations. Under `jax.set_mesh(mesh)` the
  constraint applies; on a single device without a mesh nothing happens.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(names))


def batch_sharding(mesh) -> NamedSharding:
  """Sharding of a `[B, ...]` host batch: B over the data-parallel axes."""
  return logical_sharding(mesh, ('batch',))


def _names(leaf):
  if isinstance(leaf, nnx.Variable):
    meta = leaf.get_metadata()
    return meta.get('out_sharding') or meta.get('sharding_names')
  return None


def tree_shardings(mesh, tree, rules=RULES):
  """NamedShardings for a pytree of NNX Variables (params or optax state).

  Each Variable carrying logical names (`nnx.with_partitioning`) is sharded by
  the rules; everything else (step counters, scalars) is replicated. optax
  states mirror the parameter tree, Variable nodes included, so Adam's moments
  get their parameter's sharding.
  """
  def one(leaf):
    names = _names(leaf)
    sharding = logical_sharding(mesh, names, rules)
    if isinstance(leaf, nnx.Variable):
      return leaf.replace(sharding)
    return sharding

  return jax.tree.map(one, tree,
                      is_leaf=lambda x: isinstance(x, nnx.Variable))


@contextlib.contextmanager
def use_mesh(mesh, rules=RULES):
  """Activates `mesh` for jit and tells Flax how to read logical names.

  Inside, `constrain` applies its constraints, and Flax maps the logical
  names on parameters through `rules` (rather than reading them as mesh
  axes).
  """
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
    yield mesh
