"""The training loop: one plain function, top to bottom, with banners."""

import functools
import os
import signal
import time

import jax
import numpy as np
import tqdm

from experiments import builders
from experiments import phases
from experiments import run_model
from experiments import report
from postrain import sharding
from postrain import train


def run(config, workdir: str, *, overwrite: bool = False) -> dict:
  """Trains, evaluates, checkpoints and resumes one run; returns its summary."""
  if config.recipe == 'score':
    from experiments import loop_score  # pylint: disable=g-import-not-at-top
    return loop_score.run(config, workdir, overwrite=overwrite)
  builders.prepare_workdir(workdir, config, overwrite=overwrite)
  with sharding.use_mesh(sharding.make_mesh(config.mesh)) as mesh:
    return _run(config, workdir, mesh)


def _run(config, workdir, mesh):
  # ------------------------------------------------------------ data
  init_rng, train_rng, eval_rng = jax.random.split(
      jax.random.key(config.seed), 3)
  tokenizer = builders.tokenizer(config)
  train_src, test_src, fmt = builders.sources(config.data, workdir)
  put = functools.partial(jax.make_array_from_process_local_data,
                          sharding.batch_sharding(mesh))

  # ------------------------------------------------------------ init
  model_cfg = builders.model_config(config.model, tokenizer.vocab_size)
  lm = run_model.RunModel(config, model_cfg)
  phase = phases.build(phases.Context(
      config, workdir, lm.graphdef, model_cfg, tokenizer, train_src, test_src,
      fmt, put, mesh))
  optimizer, schedule = builders.optimizer(
      config.optim, config.total_steps * phase.updates_per_step)
  build = lm.train_state_fn(phase, optimizer, init_rng)
  abstract = jax.eval_shape(lambda r: build(lm.random_lm(r)), init_rng)
  shardings = phase.extra_shardings(sharding.tree_shardings(mesh, abstract))
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)
  _say(f'{config.recipe}: {model_cfg.num_params() / 1e6:.2f}M parameters, '
       f'mesh {dict(mesh.shape)}, {jax.device_count()} x '
       f'{jax.devices()[0].device_kind}')

  # ------------------------------------------------------------ restore
  ckpt = train.Checkpointer(os.path.join(workdir, 'checkpoints'),
                            every=config.ckpt.every, keep=config.ckpt.keep,
                            use_async=config.ckpt.use_async)
  meta = {}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(abstract)
    phase.set_state(meta['data'])
    _say(f'resumed from step {int(meta["iteration"])} of {workdir}')
  elif (first := lm.first_lm(mesh)) is not None:
    state = jax.jit(build, out_shardings=shardings)(first)
    _say(f'initialised from {config.init_from or config.model.hf_path}')
  else:
    state = jax.jit(lambda r: build(lm.random_lm(r)),
                    out_shardings=shardings)(init_rng)
  start = int(meta.get('iteration', 0))
  report.truncate_metrics(workdir, start)

  # ------------------------------------------------------------ compile
  step_fn = jax.jit(
      train.make_train_step(phase.objective, optimizer,
                            grad_accum=config.optim.grad_accum,
                            **lm.step_kwargs()),
      out_shardings=(shardings, sharding.logical_sharding(mesh, None)),
      donate_argnums=0)

  def evaluate(state, step):
    return phase.evaluate_state(lm.view(state),
                                jax.random.fold_in(eval_rng, step), step)

  # ------------------------------------------------------------ loop
  writer = train.MetricWriter(workdir)
  if 'eval_before' not in meta:
    meta['eval_before'] = evaluate(state, start)
    writer.write(start, meta['eval_before'])
  stop = StopSignal()
  bar = tqdm.tqdm(total=config.total_steps, initial=start, unit='step',
                  dynamic_ncols=True, disable=jax.process_index() != 0)
  pending, t0, step = [], time.perf_counter(), start
  try:
    for step in range(start + 1, config.total_steps + 1):
      rng = jax.random.fold_in(train_rng, step)
      t_gen = time.perf_counter()
      batches, phase_metrics = phase.batches(lm.view(state), rng)
      state = phase.update_state(state)
      t_update = time.perf_counter()
      updates = []
      for i, batch in enumerate(batches):
        state, m = step_fn(state, jax.tree.map(put, batch),
                           jax.random.fold_in(rng, i))
        updates.append(m)
      # Generation time covers what `phase.batches` does (sampling, scoring,
      # old/reference log-probs); update time the optimiser steps.
      if phase.samples:  # the next generation waits for these updates anyway
        jax.block_until_ready(state)
        phase_metrics.update({'time/generate_s': t_update - t_gen,
                              'time/update_s': time.perf_counter() - t_update})
      pending.append((step, updates, phase_metrics, int(state.step)))
      last = step == config.total_steps or stop.requested
      if step % config.log_every == 0 or ckpt.should_save(step) or last:
        _flush(pending, writer, bar, schedule, t0, ckpt)
        pending, t0 = [], time.perf_counter()
      if step % config.eval_every == 0 and not last:
        writer.write(step, evaluate(state, step))
      meta.update(data=phase.get_state(), iteration=step)
      ckpt.save(step, state, meta, force=last)
      if stop.requested:
        _say(f'signal {stop.signum}: saved step {step}, exiting.')
        break
  finally:  # Even on an error: finish pending saves, give signals back.
    bar.close()
    ckpt.close()
    stop.restore()
  if stop.requested:
    writer.close()
    raise SystemExit(f'interrupted at step {step}; rerun to resume.')

  # ------------------------------------------------------------ report
  after = evaluate(state, step)
  writer.write(step, after)
  writer.close()
  if config.get('export_hf'):
    path = lm.export_hf(phase.lm_params(lm.view(state).params), tokenizer,
                        os.path.join(workdir, 'hf'))
    _say(f'exported a Hugging Face directory: {path}')
  return report.write_summary(workdir, config, model_cfg,
                              meta['eval_before'], after)


def _flush(pending, writer, bar, schedule, t0, ckpt):
  """One host sync: writes every pending step's metrics; stops on NaN/Inf.

  A step's update metrics are averaged over its updates (one for SFT,
  epochs × minibatches for RL); `finite` is their minimum.
  """
  fetched = jax.device_get([u for _, u, _, _ in pending])
  seconds = time.perf_counter() - t0
  tokens = sum(m['tokens'] for ms in fetched for m in ms)
  for (step, _, phase_metrics, updates), ms in zip(pending, fetched):
    # A phase may give a step no update (rejection sampling kept nothing).
    m = {k: float(np.mean([x[k] for x in ms])) for k in (ms or [{}])[0]}
    m['finite'] = float(min([x['finite'] for x in ms], default=1.0))
    if m['finite'] == 0.0:
      writer.flush()
      raise FloatingPointError(
          f'non-finite loss or gradient at step {step} (loss={m["loss"]}); '
          'that update was skipped and no later checkpoint was written. Last '
          f'good checkpoint: step {ckpt.latest_step()}. Lower optim.lr or '
          'check the data.')
    writer.write(step, dict(m, **phase_metrics, updates=updates,
                            lr=float(schedule(updates - 1)),
                            tokens_per_s=tokens / seconds))
  writer.flush()
  bar.update(len(pending))
  bar.set_postfix(loss=f'{m.get("loss", np.nan):.4f}',
                  tok_s=f'{tokens / seconds:,.0f}')


def _say(text):
  if jax.process_index() == 0:
    tqdm.tqdm.write(text)


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

  def __init__(self):
    self.requested, self.signum = False, None
    self._old = {s: signal.signal(s, self._handle)
                 for s in (signal.SIGTERM, signal.SIGINT)}

  def _handle(self, signum, frame):
    del frame
    self.requested, self.signum = True, signum

  def restore(self):
    for s, handler in self._old.items():
      signal.signal(s, handler)
