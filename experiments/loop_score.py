"""The score-model training loop (config.recipe == 'score').

Same harness as loop.py: workdir, jitted step with donation, Orbax
checkpoints and resume, metrics JSONL/TensorBoard, progress bar, evaluation
at intervals, summary. Batches are drawn by index from the in-memory
training set with `fold_in(data_rng, step)`, so a resumed run sees the same
batches as an uninterrupted one. Early stopping (spec §8): the best
held-out DSM parameters are saved to `<workdir>/best/`; with
`early_stop.patience > 0` training stops after that many evaluations
without improvement.
"""

import functools
import os
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from experiments import builders
from experiments import loop
from experiments import report
from experiments import score_eval as se
from postrain import recipes
from postrain import sharding
from postrain import train


def run(config, workdir: str, *, overwrite: bool = False) -> dict:
  """Trains, evaluates, checkpoints and resumes one run; returns its summary."""
  builders.prepare_workdir(workdir, config, overwrite=overwrite)
  with sharding.use_mesh(sharding.make_mesh(config.mesh)) as mesh:
    return _run(config, workdir, mesh)


def _run(config, workdir, mesh):
  # ------------------------------------------------------------ data
  init_rng, train_rng, data_rng, eval_rng = jax.random.split(
      jax.random.key(config.seed), 4)
  train_x, test_x, info = se.data(config.data, config.seed)
  diff = se.diffusion(config.diffusion, train_x)
  put = functools.partial(jax.device_put, device=sharding.batch_sharding(mesh))
  if config.data.batch_size % jax.device_count():
    raise ValueError(f'config.data.batch_size={config.data.batch_size} must '
                     f'divide by the device count ({jax.device_count()}).')

  # ------------------------------------------------------------ init
  dim = train_x.shape[1]
  optimizer, schedule = builders.optimizer(config.optim, config.total_steps)
  make = lambda rng: se.model(config.model, dim, config.data.name, rng)
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: make(0)))

  def init(rng):
    return train.init_state(nnx.state(make(rng)), optimizer)

  abstract = jax.eval_shape(init, init_rng)
  shardings = sharding.tree_shardings(mesh, abstract)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)
  state = jax.jit(init, out_shardings=shardings)(init_rng)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))

  # ------------------------------------------------------------ restore
  ckpt = train.Checkpointer(os.path.join(workdir, 'checkpoints'),
                            every=config.ckpt.every, keep=config.ckpt.keep,
                            use_async=config.ckpt.use_async)
  best_ckpt = train.Checkpointer(os.path.join(workdir, 'best'), every=0,
                                 keep=1, use_async=False)
  meta = {}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(abstract)
    tqdm.tqdm.write(f'resumed from step {int(state.step)} of {workdir}')
  elif config.init_from:
    state = state.replace(
        params=train.restore_params(config.init_from, abstract.params))
  start = int(state.step)
  report.truncate_metrics(workdir, start)

  # ------------------------------------------------------------ compile
  c = config.loss
  objective = recipes.score.make_objective(
      graphdef, diff, weighting=c.weighting, gamma=c.gamma, t_min=c.t_min,
      p_mean=c.p_mean, p_std=c.p_std, stratified=c.stratified,
      bucket_sigma_min=config.sampler.sigma_min,
      bucket_sigma_max=config.sampler.sigma_max)
  step_fn = jax.jit(
      train.make_train_step(objective, optimizer,
                            grad_accum=config.optim.grad_accum),
      out_shardings=(shardings, sharding.logical_sharding(mesh, None)),
      donate_argnums=0)
  score_fn = jax.jit(recipes.score.make_score_fn(graphdef, diff))
  tools = dict(
      dsm=jax.jit(recipes.score.make_dsm(graphdef, diff, weighting=c.weighting,
                                         gamma=c.gamma)),
      score_fn=score_fn,
      sampler=se.make_sampler(score_fn, diff, config.sampler))
  evaluate = functools.partial(
      _evaluate, config=config, diff=diff, tools=tools, train_x=train_x,
      test_x=test_x, info=info, rng=eval_rng)

  def batch_at(step):
    idx = jax.random.randint(jax.random.fold_in(data_rng, step),
                             (config.data.batch_size,), 0, train_x.shape[0])
    return {'x': put(train_x[idx])}

  # ------------------------------------------------------------ loop
  writer = train.MetricWriter(workdir)
  if 'eval_before' not in meta:
    meta['eval_before'] = evaluate(state.params, step=start)
    meta['best'] = dict(step=start, loss=meta['eval_before']['eval/dsm'],
                        bad=0)
    best_ckpt.save(start, state, {}, force=True)
    writer.write(start, meta['eval_before'])
  bar = tqdm.tqdm(total=config.total_steps, initial=start, unit='step',
                  dynamic_ncols=True, disable=jax.process_index() != 0)
  pending, t0, step, stopped = [], time.perf_counter(), start, False
  stop = loop.StopSignal()
  try:
    for step in range(start + 1, config.total_steps + 1):
      state, metrics = step_fn(state, batch_at(step),
                               jax.random.fold_in(train_rng, step))
      pending.append((step, metrics))
      last = step == config.total_steps or stop.requested
      if step % config.log_every == 0 or ckpt.should_save(step) or last:
        _flush(pending, writer, bar, schedule, t0, ckpt)
        pending, t0 = [], time.perf_counter()
      if step % config.eval_every == 0 and not last:
        ev = evaluate(state.params, step=step)
        writer.write(step, ev)
        stopped = _track_best(meta['best'], ev, step, state, best_ckpt,
                              config.early_stop.patience)
      ckpt.save(step, state, meta, force=last or stopped)
      if stopped:
        tqdm.tqdm.write(f'early stop at step {step}: no held-out DSM gain in '
                        f'{config.early_stop.patience} evaluations.')
        break
      if stop.requested:
        tqdm.tqdm.write(f'signal {stop.signum}: saved step {step}, exiting.')
        break
  finally:  # Even on an error: finish pending saves, give signals back.
    bar.close()
    ckpt.close()
    stop.restore()
  if stop.requested:
    best_ckpt.close()
    writer.close()
    raise SystemExit(f'interrupted at step {step}; rerun to resume.')

  # ------------------------------------------------------------ report
  after = evaluate(state.params, step=step, final=workdir)
  writer.write(step, after)
  _track_best(meta['best'], after, step, state, best_ckpt, 0)
  best_ckpt.close()  # synchronous saves: nothing pending on an error path
  writer.close()
  return _summary(workdir, config, num_params, meta, after, stopped)


def _track_best(best, ev, step, state, best_ckpt, patience):
  """Keeps the argmin of held-out DSM; True when patience is used up."""
  if ev['eval/dsm'] < best['loss']:
    best.update(step=step, loss=ev['eval/dsm'], bad=0)
    best_ckpt.save(step, state, {}, force=True)
    return False
  best['bad'] += 1
  return patience > 0 and best['bad'] >= patience


def _flush(pending, writer, bar, schedule, t0, ckpt):
  """One host sync: writes every pending step's metrics; stops on NaN/Inf."""
  fetched = jax.device_get([m for _, m in pending])
  seconds = time.perf_counter() - t0
  for (step, _), m in zip(pending, fetched):
    if m['finite'] == 0.0:
      writer.flush()
      raise FloatingPointError(
          f'non-finite loss or gradient at step {step} (loss={m["loss"]}); '
          f'last good checkpoint: step {ckpt.latest_step()}. Lower optim.lr.')
    writer.write(step, dict(m, lr=schedule(step - 1),
                            steps_per_s=len(pending) / seconds))
  writer.flush()
  bar.update(len(pending))
  bar.set_postfix(loss=f'{fetched[-1]["loss"]:.4f}')


def _evaluate(params, *, step, config, diff, tools, train_x, test_x, info,
              rng, final=None):
  """Held-out and train DSM on fixed draws, score R² (median over noise
  levels; every level in `r2.json`), sample quality."""
  c, sc = config.eval, config.sampler
  dsm, score_fn = tools['dsm'], tools['score_fn']
  k_dsm, k_r2, k_s, k_q = jax.random.split(rng, 4)
  out = {}
  n = min(len(test_x), len(train_x))
  for name, x in (('dsm', test_x[:n]), ('dsm_train', train_x[:n])):
    draws = se.fixed_draws(k_dsm, x, c.num_draws, diff, config.loss)
    out[f'eval/{name}'] = float(jnp.mean(dsm(params, *draws)[0]))
  times = se.noise_levels(diff, sc, c.r2_levels, config.loss.t_min)
  r2, sigmas = se.score_r2(score_fn, params, diff, test_x[:c.r2_points],
                           times, k_r2, se.references(info))
  out.update({f'eval/r2_{k}': float(np.median(v)) for k, v in r2.items()})
  samples, nfe = se.sample(tools['sampler'], params, diff, sc,
                           c.num_samples, k_s, dim=train_x.shape[1],
                           t_min=config.loss.t_min)
  out.update({f'eval/{k}': v for k, v in
              se.sample_quality(samples, test_x, k_q).items()})
  out['eval/nfe'] = float(nfe)
  if final:
    se.write_json(os.path.join(final, 'r2.json'),
                  dict(sigma=sigmas, r2=r2, step=step))
    se.plot_r2(os.path.join(final, 'r2.png'), r2, sigmas)
    se.plot_samples(os.path.join(final, 'samples.png'), samples, test_x,
                    config.data.name)
  return out


def _summary(workdir, config, num_params, meta, after, stopped):
  rows = train.read_metrics(workdir)
  steps = [r for r in rows if 'loss' in r]
  summary = {
      'recipe': config.recipe, 'data': config.data.name,
      'steps': steps[-1]['step'] if steps else 0, 'params': num_params,
      'train_loss': steps[-1]['loss'] if steps else float('nan'),
      'best_step': meta['best']['step'], 'best/dsm': meta['best']['loss'],
      'early_stopped': stopped,
      **{f'before/{k.split("/")[-1]}': v
         for k, v in meta['eval_before'].items()},
      **{f'after/{k.split("/")[-1]}': v for k, v in after.items()},
  }
  se.write_json(os.path.join(workdir, 'summary.json'), summary)
  table = report.markdown_table(
      [{'metric': k, 'value': v} for k, v in summary.items()],
      ['metric', 'value'])
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(f'# {workdir}\n\n{table}\n')
  print(table)
  report.plot_metrics(workdir, keys=('loss', 'eval/dsm', 'eval/dsm_train',
                                     'eval/r2_gaussian', 'eval/mmd',
                                     'eval/sw'))
  return summary
