"""Config -> objects. The only module besides the loop that reads a config.

Each builder turns one sub-dict (`config.model`, `config.data`, ...) into
explicit arguments of library calls, and fails early with a message that
names the key.
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil

import jax
import ml_collections

from postrain import data
from postrain import models
from postrain import train


def prepare_workdir(workdir: str, config, *, overwrite: bool = False):
  """Creates `workdir` and writes `config.json`; refuses a foreign run.

  A workdir that holds a run with a different config is left untouched and
  the run stops, unless `overwrite` is set (then the old run is deleted).
  Entries that differ only in `total_steps` count as the same run, so a run
  can be extended.
  """
  path = os.path.join(workdir, 'config.json')
  text = config.to_json_best_effort(sort_keys=True, indent=2)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    new = json.loads(text)
    diff = sorted(k for k in set(old) | set(new)
                  if k != 'total_steps' and old.get(k) != new.get(k))
    if diff and not overwrite:
      raise SystemExit(
          f'{workdir} holds a run with a different config (differs in '
          f'{diff}). Use another --workdir, or pass --overwrite to delete it.')
    if diff:
      shutil.rmtree(workdir)
  os.makedirs(workdir, exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


HF_MODEL_KEYS = ('hf_path', 'dtype', 'param_dtype')


def model_config(c: ml_collections.ConfigDict, vocab_size: int):
  """`TransformerConfig.preset(c.preset)` with every other key overriding.

  With `c.hf_path` (a local HF directory) the architecture comes from its
  config.json; only `dtype` and `param_dtype` may be set beside it.
  """
  if c.get('hf_path'):
    extra = sorted(set(c) - set(HF_MODEL_KEYS))
    if extra:
      raise ValueError(
          f'config.model.hf_path is set, so the architecture comes from '
          f'{c.hf_path}/config.json; remove {extra} (allowed beside it: '
          f'{list(HF_MODEL_KEYS)}).')
    cfg = models.config_from_hf(c.hf_path)
    return cfg.replace(**{k: c[k] for k in ('dtype', 'param_dtype') if k in c})
  fields = {f.name for f in dataclasses.fields(models.TransformerConfig)}
  overrides = {k: v for k, v in c.items() if k != 'preset'}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f'config.model: unknown keys {unknown}; valid: '
                     f'{sorted(fields | {"preset"})}.')
  overrides.setdefault('vocab_size', vocab_size)
  if overrides['vocab_size'] < vocab_size:
    raise ValueError(f'config.model.vocab_size={overrides["vocab_size"]} is '
                     f'smaller than the tokenizer vocabulary ({vocab_size}).')
  return models.TransformerConfig.preset(c.preset).replace(**overrides)


def tokenizer(config):
  """`config.data.tokenizer`, or the HF model's own tokenizer (with chat)."""
  hf_path = config.model.get('hf_path')
  spec = config.data.tokenizer
  if hf_path:
    if spec not in ('', hf_path):
      raise ValueError(f'config.data.tokenizer={spec!r} but the model is '
                       f'{hf_path}: set data.tokenizer to "" to use its own.')
    return data.ChatTokenizer(hf_path)
  return data.load_tokenizer(spec)


def lora(config) -> dict | None:
  """`apply_lora` keywords of `config.lora`, or None when off (rank 0)."""
  c = config.get('lora')
  if not c or not c.rank:
    return None
  return dict(rank=c.rank, alpha=c.alpha, targets=tuple(
      t.strip() for t in c.targets.split(',') if t.strip()), seed=config.seed)


def optimizer(c: ml_collections.ConfigDict, total_steps: int):
  """The optax optimiser and its schedule from `config.optim`."""
  schedule = train.make_schedule(
      c.schedule, peak=c.lr, total_steps=total_steps,
      warmup_steps=c.warmup_steps, decay_steps=c.decay_steps,
      end_value=c.end_lr)
  opt = train.make_optimizer(
      c.name, schedule, b1=c.b1, b2=c.b2, weight_decay=c.weight_decay,
      grad_clip=c.grad_clip or None)
  return opt, schedule


@contextlib.contextmanager
def _exclusive(directory: str):
  """Holds a file lock: parallel runs (a sweep) prepare a dataset once."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, '.prepare.lock'), 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def sources(c: ml_collections.ConfigDict, workdir: str):
  """`(train_source, test_source, format_fn)` for `config.data`."""
  data_dir = c.get('data_dir') or os.path.join(os.path.dirname(
      os.path.abspath(workdir)), 'tfds')
  with _exclusive(data_dir):
    return _sources(c, data_dir)


def _sources(c, data_dir):
  if c.task == 'arithmetic':
    builder = data.prepare(
        'synthetic_arithmetic', data_dir, min_steps=c.min_steps,
        max_steps=c.max_steps, operand_max=c.operand_max,
        num_train=c.num_train, num_test=c.num_test)
    # Online recipes read only prompts: their configs have no `rationale`.
    fmt = data.arithmetic_format(rationale=c.get('rationale', True),
                                 noise=c.get('noise', 0.0),
                                 hint_rate=c.get('hint_rate', 0.0))
  elif c.task == 'jsonl':
    if not c.jsonl_path:
      raise ValueError('config.data.task=jsonl needs config.data.jsonl_path '
                       '(a directory with train.jsonl and test.jsonl).')
    builder = data.prepare('jsonl_text', data_dir, path=c.jsonl_path)
    if 'chosen_field' in c:  # preference pairs; their SFT view is the chosen
      fmt = lambda r: data.pair_fields(r, c.prompt_field, c.chosen_field,
                                       c.rejected_field)[:2]
    else:
      fmt = data.jsonl_format(c.prompt_field, c.response_field)
  elif c.task == 'gsm8k':  # Local GSM8K JSONL files (TRICE, STaR, RFT).
    if not c.jsonl_path:
      raise ValueError('config.data.task=gsm8k needs config.data.jsonl_path '
                       '(a directory with GSM8K train.jsonl and test.jsonl).')
    builder = data.prepare('gsm8k', data_dir, path=c.jsonl_path)
    fmt = data.gsm8k_format(rationale=c.get('rationale', True))
  elif c.task == 'digitsum':  # In memory: grain reads any sequence.
    return (data.digitsum_corpus(c.num_train, seed=0),
            data.digitsum_prompts(), data.digitsum_format)
  elif c.task == 'synthetic_preference':  # in memory: pairs of a known reward
    task = preference_task(c)
    return (task.pairs(c.num_train, 'train'), task.pairs(c.num_test, 'test'),
            lambda r: (r['prompt'], r['chosen']))
  else:
    raise ValueError(f'config.data.task={c.task!r}; valid: arithmetic, jsonl, '
                     'gsm8k, digitsum, synthetic_preference.')
  return (data.data_source(builder, 'train'), data.data_source(builder, 'test'),
          fmt)


def verifier(task: str):
  """`fn(completion_text, record) -> bool` of a task with a checkable answer.

  Returns None for tasks without one (`jsonl`, `synthetic_preference`).
  """
  if task == 'arithmetic':
    return lambda text, r: data.is_correct(text, r['answer'])
  if task == 'gsm8k':
    return lambda text, r: data.gsm8k_is_correct(text, r['answer'])
  if task == 'digitsum':
    return data.digitsum_correct
  return None


def preference_task(c: ml_collections.ConfigDict) -> data.PreferenceTask:
  """The synthetic preference task of `config.data` (its `task_seed`)."""
  return data.PreferenceTask(seed=c.task_seed)


def loader(c: ml_collections.ConfigDict, source, tokenizer, fmt, *, seed: int,
           shuffle: bool = True, num_epochs: int | None = None):
  """The grain loader of `config.data`, sharded over processes."""
  if c.batch_size % jax.process_count():
    raise ValueError(f'config.data.batch_size={c.batch_size} must divide by '
                     f'the number of processes ({jax.process_count()}).')
  return data.make_sft_loader(
      source, tokenizer, fmt, batch_size=c.batch_size // jax.process_count(),
      max_len=c.max_len, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
      pack=c.packing, overflow=c.overflow,
      shard_index=jax.process_index(), shard_count=jax.process_count())


def load_config_module(spec: str):
  """Imports the config file of `path.py[:arg]`; returns (module, arg)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path, _, arg = spec.partition(':')
  if not os.path.exists(path):
    raise SystemExit(f'--config={spec}: no file {path}.')
  module_spec = importlib.util.spec_from_file_location('_postrain_cfg', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module, (arg or None)


def check_keys(config, keys) -> None:
  """Stops with the valid keys when an override names an unknown key."""
  for key in keys:
    node, parts = config, key.split('.')
    for depth, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        where = '.'.join(parts[:depth]) or 'config'
        valid = sorted(node.keys()) if isinstance(
            node, ml_collections.ConfigDict) else []
        raise SystemExit(
            f'unknown config key {key!r}: {where} has no {part!r}. '
            f'Valid keys of {where}: {valid}.')
      node = node[part]


def override(config: ml_collections.ConfigDict, overrides: dict, *,
             skip_missing: bool = False) -> ml_collections.ConfigDict:
  """`config` with dotted keys set (`{'optim.lr': 1e-3}`), locked again.

  An unknown key stops with the valid ones, unless `skip_missing` (shared
  override sets, e.g. a test's small sizes, that name other recipes' keys).
  """
  if not skip_missing:
    check_keys(config, overrides)
  config.unlock()
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for part in parents:
      node = node.get(part, {})
    if leaf in node:
      node[leaf] = value
  config.lock()
  return config


def check_argv_overrides(argv) -> None:
  """Validates every `--config.KEY=VALUE` of `argv` against the config."""
  spec = next((a.split('=', 1)[1] for a in argv
               if a.startswith('--config=')), None)
  if spec is None:
    return
  module, arg = load_config_module(spec)
  keys = [a[len('--config.'):].split('=', 1)[0] for a in argv
          if a.startswith('--config.')]
  check_keys(module.get_config(arg), keys)
