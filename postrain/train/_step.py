"""TrainState and the generic update step over an objective.

An objective is `objective(params, batch, rng) -> (scalar_loss, metrics)`.
The step is a pure function `step(state, batch, rng) -> (state, metrics)`
that the runner jits once with shardings and donation.
"""

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

Objective = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict]]


@flax.struct.dataclass
class TrainState:
  """Everything a run checkpoints, as one pytree.

  Attributes:
    step: number of updates applied so far.
    params: trainable parameters (an `nnx.State`).
    opt_state: the optax state.
    extra: recipe state (reference params, rationale memory, ...), sharded,
      donated and checkpointed with the rest.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  extra: Any = flax.struct.field(default_factory=dict)


def init_state(params, optimizer: optax.GradientTransformation, extra=None):
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), extra=extra or {})


def _split_micro(batch, n):
  def split(x):
    if x.shape[0] % n:
      raise ValueError(
          f'batch size {x.shape[0]} is not divisible by optim.grad_accum={n}.')
    return x.reshape(n, x.shape[0] // n, *x.shape[1:])
  return jax.tree.map(split, batch)


def _grads(objective, params, batch, rng, grad_accum):
  """Loss, metrics and gradients, averaged over `grad_accum` micro-batches."""
  grad_fn = jax.value_and_grad(objective, has_aux=True)
  if grad_accum == 1:
    (loss, metrics), grads = grad_fn(params, batch, rng)
    return loss, metrics, grads

  def micro(acc, xs):
    mb, r = xs
    (loss, metrics), grads = grad_fn(params, mb, r)
    acc = jax.tree.map(jnp.add, acc, (loss, metrics, grads))
    return acc, None

  mbs = _split_micro(batch, grad_accum)
  rngs = jax.random.split(rng, grad_accum)
  zeros = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], mbs),
                         rngs[0])
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       (zeros[0][0], zeros[0][1], zeros[1]))
  (loss, metrics, grads), _ = jax.lax.scan(micro, zeros, (mbs, rngs))
  # Mean over micro-batches: equals the full-batch loss when each micro-batch
  # holds the same number of counted tokens.
  return jax.tree.map(lambda x: x / grad_accum, (loss, metrics, grads))


def make_train_step(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    *,
    grad_accum: int = 1,
    frozen_key: str | None = None,
    combine: Callable[[Any, Any, jax.Array], Any] | None = None,
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
  """Builds `step(state, batch, rng) -> (state, metrics)`.

  A step whose loss or gradient norm is not finite leaves parameters and
  optimiser state unchanged and reports `finite = 0`; the runner stops the run
  there, so nothing non-finite reaches a checkpoint.

  With `frozen_key`, `state.params` holds only the trained part (e.g. LoRA
  adapters) and `state.extra[frozen_key]` the frozen rest; the objective
  receives `combine(params, frozen, key)` (the full parameters; `key` is
  split from the step's rng, e.g. for LoRA dropout), and gradients,
  optimiser state and the norms cover `params` alone
  (`postrain.models.combine_lora` is such a `combine`).
  """
  if (frozen_key is None) != (combine is None):
    raise ValueError('make_train_step: frozen_key and combine go together.')

  def step(state: TrainState, batch, rng):
    if frozen_key is None:
      fn = objective
    else:
      frozen = state.extra[frozen_key]

      def fn(params, batch, rng):
        key, rng = jax.random.split(rng)
        return objective(combine(params, frozen, key), batch, rng)

    loss, metrics, grads = _grads(fn, state.params, batch, rng, grad_accum)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(
        lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(
        step=state.step + 1,
        params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm,
                   update_norm=optax.global_norm(updates),
                   param_norm=optax.global_norm(state.params),
                   finite=finite.astype(jnp.float32))
    return new_state, metrics

  return step
