"""One thin module over Orbax: save and restore the whole run.

A checkpoint holds three items: `params` (the model parameters alone, what
another run's `init_from` reads), `train` (the rest of the `TrainState`: step,
optimiser and recipe state) and `meta` (JSON: the data-iterator state and
whatever the runner keeps beside it).
Saves are asynchronous; restores read against abstract shapes that carry
shardings, so every array lands directly on its devices.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """`CheckpointManager` with interval saves, keep-N and forced saves.

  Args:
    directory: where `<step>/` folders go.
    every: save interval in steps (0 = only forced saves).
    keep: how many checkpoints to keep.
    use_async: write in a background thread.
  """

  def __init__(self, directory: str, *, every: int, keep: int = 3,
               use_async: bool = True):
    self.directory = os.path.abspath(directory)
    self._every = every
    self._mngr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            enable_async_checkpointing=use_async),
    )

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def should_save(self, step: int) -> bool:
    return self._every > 0 and step % self._every == 0

  def save(self, step: int, state, meta: dict[str, Any], *,
           force: bool = False) -> bool:
    """Saves at interval steps, or at any step when `force` is set."""
    if not (force or self.should_save(step)):
      return False
    if step in self._mngr.all_steps():
      return False
    return self._mngr.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(state.params),
        train=ocp.args.StandardSave(_rest(state)),
        meta=ocp.args.JsonSave(meta)))

  def restore(self, abstract_state, step: int | None = None):
    """Returns `(state, meta)` of `step` (default: latest)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint under {self.directory}.')
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    out = self._mngr.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(target.params),
        train=ocp.args.StandardRestore(_rest(target)),
        meta=ocp.args.JsonRestore()))
    return target.replace(params=out.params, **out.train), out.meta

  def wait(self):
    self._mngr.wait_until_finished()

  def close(self):
    self._mngr.wait_until_finished()
    self._mngr.close()


def _rest(state) -> dict[str, Any]:
  return dict(step=state.step, opt_state=state.opt_state, extra=state.extra)


def restore_params(workdir: str, abstract_params):
  """Parameters of the latest checkpoint of another run (`init_from`).

  Args:
    workdir: the other run's workdir (holding `checkpoints/`).
    abstract_params: abstract params with shardings, matching that run's.

  Returns:
    The parameters, placed with the shardings of `abstract_params`.
  """
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  step = (ocp.CheckpointManager(directory).latest_step()
          if os.path.isdir(directory) else None)
  if step is None:
    raise FileNotFoundError(
        f'init_from={workdir!r}: no checkpoint under {directory}. Point it at '
        'the workdir of a finished run.')
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_params)
  mngr = ocp.CheckpointManager(directory)
  out = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(target)))
  mngr.close()
  return out.params
