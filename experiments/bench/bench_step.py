r"""Times the jitted SFT train step and the sampler for a model preset.

  python -m experiments.bench.bench_step --preset=tiny --batch=8 --seq=128
  python -m experiments.bench.bench_step --preset=qwen2.5-0.5b --batch=8 \
      --seq=1024 --dtype=bfloat16          # on a GPU

Prints one table: compile time, step time, tokens/s, peak memory, and MFU
when the backend is an accelerator (FLOPs from `flops_per_token`, peak FLOP/s
from the table below). Random weights and tokens: it measures speed only.
"""

import resource
import time

from absl import app
from absl import flags
from flax import nnx
import jax
import numpy as np
import optax

from experiments import report
from postrain import models
from postrain import recipes
from postrain import sampling
from postrain import sharding
from postrain import train

_PRESET = flags.DEFINE_string('preset', 'tiny', 'TransformerConfig preset.')
_BATCH = flags.DEFINE_integer('batch', 8, 'Sequences per step.')
_SEQ = flags.DEFINE_integer('seq', 128, 'Tokens per sequence.')
_DTYPE = flags.DEFINE_string('dtype', None, 'Compute dtype override.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps after warm-up.')
_NEW = flags.DEFINE_integer('new_tokens', 64, 'Sampled tokens per prompt.')
_PROMPT = flags.DEFINE_integer('prompt', 64, 'Prompt length for sampling.')
_SKIP_SAMPLER = flags.DEFINE_bool('skip_sampler', False, 'Time the step only.')

# Dense bf16 peak FLOP/s per chip (vendor figures, no sparsity).
PEAK_FLOPS = {
    'H100': 989e12, 'H200': 989e12, 'A100': 312e12, 'L4': 121e12,
    'TPU v4': 275e12, 'TPU v5 lite': 197e12, 'TPU v5e': 197e12,
    'TPU v5p': 459e12, 'TPU v6 lite': 918e12,
}


def _peak_flops(device) -> float | None:
  kind = device.device_kind
  return next((v for k, v in PEAK_FLOPS.items() if k in kind), None)


def _peak_memory_gb() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use'] / 1e9
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # host KB


def _timed(fn, *args):
  t = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t


def bench_step(cfg, mesh, batch, seq, steps):
  """(compile s, step s) of the SFT step at [batch, seq]."""
  opt = optax.adamw(1e-4)
  graphdef, _ = nnx.split(nnx.eval_shape(
      lambda: models.Transformer(cfg, rngs=nnx.Rngs(0))))

  def init(rng):
    return train.init_state(
        nnx.state(models.Transformer(cfg, rngs=nnx.Rngs(rng))), opt)

  shardings = sharding.tree_shardings(
      mesh, jax.eval_shape(init, jax.random.key(0)))
  state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.vocab_size, (batch, seq + 1)).astype(np.int32)
  data = jax.device_put(dict(
      inputs=tokens[:, :-1], targets=tokens[:, 1:],
      positions=np.tile(np.arange(seq, dtype=np.int32), (batch, 1)),
      segment_ids=np.ones((batch, seq), np.int32),
      loss_mask=np.ones((batch, seq), np.float32)),
                        sharding.batch_sharding(mesh))
  step = jax.jit(train.make_train_step(
      recipes.sft.make_objective(graphdef), opt),
                 out_shardings=(shardings, None), donate_argnums=0)
  t = time.perf_counter()
  compiled = step.lower(state, data, jax.random.key(0)).compile()
  compile_s = time.perf_counter() - t
  (state, _), _ = _timed(compiled, state, data, jax.random.key(0))  # warm-up
  t = time.perf_counter()
  for i in range(steps):
    state, m = compiled(state, data, jax.random.key(i))
  jax.block_until_ready(m)
  return compile_s, (time.perf_counter() - t) / steps, graphdef, state.params


def bench_sampler(cfg, graphdef, params, batch, prompt, new_tokens):
  """(first-call s, steady s) for sampling `new_tokens` after `prompt`."""
  prompts = np.random.default_rng(1).integers(
      1, cfg.vocab_size, (batch, prompt)).astype(np.int32)
  lengths = np.full((batch,), prompt, np.int32)
  run = lambda i: sampling.sample(
      graphdef, params, prompts, lengths, jax.random.key(i),
      max_new_tokens=new_tokens, temperature=1.0).tokens
  _, first = _timed(run, 0)
  _, steady = _timed(run, 1)
  return first, steady


def main(argv):
  del argv
  cfg = models.TransformerConfig.preset(_PRESET.value)
  if _DTYPE.value:
    cfg = cfg.replace(dtype=_DTYPE.value)
  mesh = sharding.make_mesh([('data', -1)])
  b, t = _BATCH.value, _SEQ.value
  with sharding.use_mesh(mesh):
    compile_s, step_s, graphdef, params = bench_step(cfg, mesh, b, t,
                                                     _STEPS.value)
  tok_s = b * t / step_s
  peak = _peak_flops(jax.devices()[0])
  mfu = (cfg.flops_per_token(t) * tok_s / (peak * jax.device_count())
         if peak and jax.default_backend() != 'cpu' else float('nan'))
  rows = [dict(part='train step', compile_s=compile_s, time_ms=step_s * 1e3,
               tokens_per_s=tok_s, mfu=mfu)]
  if not _SKIP_SAMPLER.value:
    first, steady = bench_sampler(cfg, graphdef, params, b, _PROMPT.value,
                                  _NEW.value)
    rows.append(dict(part='sampler', compile_s=first - steady,
                     time_ms=steady * 1e3,
                     tokens_per_s=b * _NEW.value / steady, mfu=float('nan')))
  print(f'{_PRESET.value}: {cfg.num_params() / 1e6:.1f}M params, batch {b}, '
        f'seq {t}, dtype {cfg.dtype}, {jax.device_count()}x '
        f'{jax.devices()[0].device_kind}, peak memory '
        f'{_peak_memory_gb():.2f} GB')
  print(report.markdown_table(
      rows, ['part', 'compile_s', 'time_ms', 'tokens_per_s', 'mfu']))


if __name__ == '__main__':
  app.run(main)
