"""Optimisers and schedules: optax calls, plus REX (not in optax).

See shared/specs/optim_schedules.md: reuse optax, add only what it lacks.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ('constant', 'warmup_cosine', 'wsd', 'linear', 'rex')
OPTIMIZERS = ('adamw', 'lion')


def rex_schedule(peak: float, steps: int) -> optax.Schedule:
  """REX: η(t) = η_max·(1 − z)/(1 − z/2), z = t/T.

  Chen, Wolfe, Kyrillidis, "REX: Revisiting Budgeted Training with an
  Improved Schedule" (arXiv:2107.04197). η(0) = η_max, η(T/2) = 2/3·η_max,
  η(T) = 0.
  """
  def schedule(step):
    z = jnp.clip(step / max(steps, 1), 0.0, 1.0)
    return peak * (1.0 - z) / (1.0 - z / 2.0)
  return schedule


def make_schedule(
    kind: str,
    *,
    peak: float,
    total_steps: int,
    warmup_steps: int = 0,
    decay_steps: int = 0,
    end_value: float = 0.0,
) -> optax.Schedule:
  """A learning-rate schedule by name (see `SCHEDULES`).

  Args:
    kind: 'constant' (after warmup), 'warmup_cosine', 'wsd' (warmup, stable,
      then linear decay over the last `decay_steps`), 'linear' (warmup then
      linear decay to `end_value`), 'rex' (warmup then REX).
    peak: peak learning rate.
    total_steps: length of the run.
    warmup_steps: linear warmup from 0.
    decay_steps: WSD's decay length.
    end_value: final learning rate.

  Returns:
    An optax schedule `step -> lr`.
  """
  if kind not in SCHEDULES:
    raise ValueError(f'optim.schedule={kind!r}; valid: {SCHEDULES}.')
  rest = max(total_steps - warmup_steps, 1)
  warmup = optax.linear_schedule(0.0, peak, max(warmup_steps, 1))
  if kind == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup_steps, max(total_steps, warmup_steps + 1),
        end_value=end_value)
  if kind == 'constant':
    after = optax.constant_schedule(peak)
  elif kind == 'linear':
    after = optax.linear_schedule(peak, end_value, rest)
  elif kind == 'rex':
    after = rex_schedule(peak, rest)
  else:  # wsd: join_schedules calls `decay` with step − boundary.
    stable = max(total_steps - warmup_steps - decay_steps, 0)
    decay = optax.linear_schedule(peak, end_value, max(decay_steps, 1))
    after = optax.join_schedules(
        [optax.constant_schedule(peak), decay], [stable])
  if warmup_steps <= 0:
    return after
  return optax.join_schedules([warmup, after], [warmup_steps])


def decay_mask(params):
  """Weight decay on matrices only: no decay on norm scales and biases."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
    name: str,
    schedule: optax.Schedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    weight_decay: float = 0.01,
    grad_clip: float | None = 1.0,
    mask: Callable | None = decay_mask,
) -> optax.GradientTransformation:
  """AdamW or Lion with global-norm clipping (clip first, then the update)."""
  if name == 'adamw':
    opt = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay,
                      mask=mask)
  elif name == 'lion':
    opt = optax.lion(schedule, b1=b1, b2=b2, weight_decay=weight_decay,
                     mask=mask)
  else:
    raise ValueError(f'optim.name={name!r}; valid: {OPTIMIZERS}.')
  if grad_clip:
    opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
  return opt
