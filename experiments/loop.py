"""The training loop: one plain function, top to bottom, with banners."""

import functools
import os
import signal
import time

from flax import nnx
import jax
import numpy as np
import tqdm

from experiments import builders
from experiments import report
from postrain import data
from postrain import models
from postrain import recipes
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
  # ------------------------------------------------------------ mesh
  init_rng, train_rng, eval_rng = jax.random.split(
      jax.random.key(config.seed), 3)
  batch_sharding = sharding.batch_sharding(mesh)
  replicated = sharding.logical_sharding(mesh, None)

  # ------------------------------------------------------------ data
  tokenizer = data.load_tokenizer(config.data.tokenizer)
  train_src, test_src, fmt = builders.sources(config.data, workdir)
  train_it = iter(builders.loader(config.data, train_src, tokenizer, fmt,
                                  seed=config.seed))

  # ------------------------------------------------------------ init
  model_cfg = builders.model_config(config.model, tokenizer.vocab_size)
  optimizer, schedule = builders.optimizer(config.optim, config.total_steps)
  graphdef, _ = nnx.split(nnx.eval_shape(
      lambda: models.Transformer(model_cfg, rngs=nnx.Rngs(0))))

  def init(rng):
    params = nnx.state(models.Transformer(model_cfg, rngs=nnx.Rngs(rng)))
    return train.init_state(params, optimizer)

  abstract = jax.eval_shape(init, init_rng)
  shardings = sharding.tree_shardings(mesh, abstract)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)
  state = jax.jit(init, out_shardings=shardings)(init_rng)
  _say(f'model: {model_cfg.num_params() / 1e6:.2f}M parameters, mesh '
       f'{dict(mesh.shape)}, {jax.device_count()} x '
       f'{jax.devices()[0].device_kind}')

  # ------------------------------------------------------------ restore
  ckpt = train.Checkpointer(os.path.join(workdir, 'checkpoints'),
                            every=config.ckpt.every, keep=config.ckpt.keep,
                            use_async=config.ckpt.use_async)
  meta = {}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(abstract)
    train_it.set_state(_decode_state(meta['data']))
    _say(f'resumed from step {int(state.step)} of {workdir}')
  elif config.init_from:
    state = state.replace(
        params=train.restore_params(config.init_from, abstract.params))
    _say(f'initialised parameters from {config.init_from}')
  start = int(state.step)
  report.truncate_metrics(workdir, start)

  # ------------------------------------------------------------ compile
  objective = recipes.sft.make_objective(graphdef, **config.loss)
  step_fn = jax.jit(
      train.make_train_step(objective, optimizer,
                            grad_accum=config.optim.grad_accum),
      out_shardings=(shardings, replicated), donate_argnums=0)
  put = functools.partial(jax.make_array_from_process_local_data,
                          batch_sharding)
  evaluate = functools.partial(
      _evaluate, config=config, workdir=workdir, graphdef=graphdef,
      objective=jax.jit(objective), tokenizer=tokenizer, fmt=fmt,
      test_src=test_src, put=put, rng=eval_rng)

  # ------------------------------------------------------------ loop
  writer = train.MetricWriter(workdir)
  if 'eval_before' not in meta:
    meta['eval_before'] = evaluate(state.params, step=start)
    writer.write(start, meta['eval_before'])
  stop = _StopSignal()
  bar = tqdm.tqdm(total=config.total_steps, initial=start, unit='step',
                  dynamic_ncols=True, disable=jax.process_index() != 0)
  pending, t0, step = [], time.perf_counter(), start
  try:
    for step in range(start + 1, config.total_steps + 1):
      batch = jax.tree.map(put, next(train_it))
      state, metrics = step_fn(state, batch,
                               jax.random.fold_in(train_rng, step))
      pending.append((step, metrics))
      last = step == config.total_steps or stop.requested
      if step % config.log_every == 0 or ckpt.should_save(step) or last:
        _flush(pending, writer, bar, schedule, t0, ckpt, train_it.stats)
        pending, t0 = [], time.perf_counter()
      if step % config.eval_every == 0 and not last:
        writer.write(step, evaluate(state.params, step=step))
      meta['data'] = _encode_state(train_it.get_state())
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
  after = evaluate(state.params, step=step)
  writer.write(step, after)
  writer.close()
  return report.write_summary(workdir, config, model_cfg,
                              meta['eval_before'], after)


def _flush(pending, writer, bar, schedule, t0, ckpt, data_stats):
  """One host sync: writes every pending step's metrics; stops on NaN/Inf."""
  fetched = jax.device_get([m for _, m in pending])
  seconds = time.perf_counter() - t0
  tokens = sum(m['tokens'] for m in fetched)
  for (step, _), m in zip(pending, fetched):
    if m['finite'] == 0.0:
      writer.flush()
      raise FloatingPointError(
          f'non-finite loss or gradient at step {step} (loss={m["loss"]}); '
          'that update was skipped and no later checkpoint was written. Last '
          f'good checkpoint: step {ckpt.latest_step()}. Lower optim.lr or '
          'check the data.')
    writer.write(step, dict(m, lr=schedule(step - 1),
                            tokens_per_s=tokens / seconds,
                            truncated=data_stats.num_truncated))
  writer.flush()
  bar.update(len(pending))
  bar.set_postfix(loss=f'{fetched[-1]["loss"]:.4f}',
                  tok_s=f'{tokens / seconds:,.0f}')


def _evaluate(params, *, step, config, workdir, graphdef, objective,
              tokenizer, fmt, test_src, put, rng):
  """Held-out loss, and task accuracy by greedy sampling and the verifier."""
  c = config.eval
  loader = builders.loader(config.data, test_src, tokenizer, fmt,
                           seed=0, shuffle=False, num_epochs=None)
  losses = [objective(params, jax.tree.map(put, b), rng)[0]
            for b, _ in zip(loader, range(c.loss_batches))]
  out = {'eval/loss': float(np.mean(jax.device_get(losses)))}
  n = min(c.num_prompts, len(test_src))
  if n and config.data.task == 'arithmetic':
    records = [test_src[i] for i in range(n)]
    prompts = [fmt(r)[0] for r in records]
    texts = recipes.generate(
        graphdef, params, tokenizer, prompts, rng,
        max_new_tokens=c.max_new_tokens, batch_size=c.batch_size,
        max_prompt_len=config.data.max_len, temperature=c.temperature)
    acc, bits = recipes.accuracy(texts, [r['answer'] for r in records],
                                 data.is_correct)
    out['eval/accuracy'] = acc
    report.write_samples(workdir, step, prompts[:c.num_samples_written],
                         texts, records, bits)
  return out


def _say(text):
  if jax.process_index() == 0:
    tqdm.tqdm.write(text)


class _StopSignal:
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


def _encode_state(s):
  return {'bytes': s.decode()} if isinstance(s, bytes) else s


def _decode_state(s):
  return s['bytes'].encode() if isinstance(s, dict) and 'bytes' in s else s
