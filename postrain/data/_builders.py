"""TFDS builders that write array_record and are read without TensorFlow.

TFDS 4.9 prepares a `GeneratorBasedBuilder` with `file_format='array_record'`
and serves it through `as_data_source` using only numpy, so neither writing
nor reading imports TensorFlow (a test checks `sys.modules`).
"""

import dataclasses
import json
import os
import re
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from postrain.data import _arithmetic
from postrain.data import _gsm8k

_FILE_FORMAT = 'array_record'

# TFDS looks for a checksums file next to a builder's source via
# `code_path`, which for package modules needs the `importlib_resources`
# backport (not a dependency). Local builders download nothing, so they
# declare no code path and TFDS skips the lookup.
_NO_CODE_PATH = tfds.core.utils.classproperty(classmethod(lambda cls: None))


@dataclasses.dataclass(eq=False)
class SyntheticArithmeticConfig(tfds.core.BuilderConfig):
  """Difficulty and split sizes of `SyntheticArithmetic`.

  The config name becomes the directory name, so `arithmetic_config` derives
  it from every field.
  """

  min_steps: int = 2
  max_steps: int = 3
  operand_max: int = 9
  value_max: int = 99
  operators: str = '+-*'
  seed: int = 0
  num_train: int = 1000
  num_test: int = 100

  def task(self) -> _arithmetic.ArithmeticTask:
    return _arithmetic.ArithmeticTask(
        min_steps=self.min_steps,
        max_steps=self.max_steps,
        operand_max=self.operand_max,
        value_max=self.value_max,
        operators=self.operators,
        seed=self.seed,
    )


_OP_NAMES = {'+': 'add', '-': 'sub', '*': 'mul'}


def arithmetic_config(**kwargs) -> SyntheticArithmeticConfig:
  """Returns a config whose name encodes all of its fields."""
  config = SyntheticArithmeticConfig(name='tmp', **kwargs)
  config.task()  # Validates the difficulty knobs early.
  ops = '_'.join(_OP_NAMES[o] for o in config.operators)
  config.name = (
      f'steps{config.min_steps}-{config.max_steps}_op{config.operand_max}'
      f'_val{config.value_max}_{ops}_seed{config.seed}'
      f'_n{config.num_train}-{config.num_test}'
  )
  return config


class SyntheticArithmetic(tfds.core.GeneratorBasedBuilder):
  """`ArithmeticTask` examples as text features question/rationale/answer."""

  VERSION = tfds.core.Version('1.0.0')
  code_path = _NO_CODE_PATH
  BUILDER_CONFIGS = [arithmetic_config()]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Synthetic multi-step arithmetic with rationales.',
        features=tfds.features.FeaturesDict(
            {
                'question': tfds.features.Text(),
                'rationale': tfds.features.Text(),
                'answer': tfds.features.Text(),
                'index': np.int64,
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    return {
        'train': self._generate_examples('train', config.num_train),
        'test': self._generate_examples('test', config.num_test),
    }

  def _generate_examples(self, split: str, num: int):
    if num <= 0:
      raise ValueError(f'Split {split!r} needs a positive size, got {num}.')
    task = self.builder_config.task()
    for index in range(num):
      yield index, dict(task.example(index, split), index=index)


@dataclasses.dataclass(eq=False)
class JsonlTextConfig(tfds.core.BuilderConfig):
  """Where `JsonlText` reads: a `.jsonl` file (split 'train') or a directory
  whose `<split>.jsonl` files become splits."""

  path: str = ''


def _jsonl_splits(path: str) -> dict[str, str]:
  """Maps split name -> file for a JSONL file or directory."""
  if os.path.isfile(path):
    return {'train': path}
  if not os.path.isdir(path):
    raise FileNotFoundError(f'JSONL path {path!r} does not exist.')
  splits = {}
  for name in sorted(os.listdir(path)):
    stem, ext = os.path.splitext(name)
    if ext == '.jsonl' and re.fullmatch(r'\w+', stem):
      splits[stem] = os.path.join(path, name)
  if not splits:
    raise FileNotFoundError(f'No <split>.jsonl files in directory {path!r}.')
  return splits


class JsonlText(tfds.core.GeneratorBasedBuilder):
  """Each line of local JSONL files, stored as its raw JSON string.

  Features: `json` (the line's JSON object, re-serialised compactly) and
  `line` (1-based line number in its file), so any field can be selected
  later and every record can be traced back to its source line.
  """

  VERSION = tfds.core.Version('1.0.0')
  code_path = _NO_CODE_PATH

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Raw JSON lines from local files.',
        features=tfds.features.FeaturesDict(
            {
                'json': tfds.features.Text(),
                'line': np.int64,
            }
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    splits = _jsonl_splits(self.builder_config.path)
    return {s: self._generate_examples(f) for s, f in splits.items()}

  def _generate_examples(self, file: str):
    count = 0
    with open(file) as f:
      for line_number, line in enumerate(f, start=1):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f'{file}:{line_number}: invalid JSON ({e}).') from e
        if not isinstance(record, dict):
          raise ValueError(f'{file}:{line_number}: expected a JSON object.')
        count += 1
        yield line_number, {'json': json.dumps(record), 'line': line_number}
    if not count:
      raise ValueError(f'JSONL file {file!r} holds no records.')


BUILDERS = {
    'synthetic_arithmetic': SyntheticArithmetic,
    'jsonl_text': JsonlText,
    'gsm8k': _gsm8k.Gsm8k,
}


def _make_builder(builder_name: str, data_dir: str, **kwargs):
  if builder_name == 'synthetic_arithmetic':
    config = arithmetic_config(**kwargs)
  elif builder_name == 'jsonl_text':
    path = kwargs.pop('path', None)
    if path is None or kwargs.keys() - {'name'}:
      raise TypeError(
          "prepare('jsonl_text', ...) takes path= and optionally name=, got "
          f'{sorted(kwargs) + (["path"] if path else [])}.'
      )
    config_name = kwargs.get('name') or re.sub(
        r'\W', '_', os.path.basename(os.path.normpath(path))
    )
    config = JsonlTextConfig(name=config_name, path=os.path.abspath(path))
  elif builder_name == 'gsm8k':
    if 'path' not in kwargs or kwargs.keys() - {'path', 'name'}:
      raise TypeError(
          "prepare('gsm8k', ...) takes path= (a directory with train.jsonl /"
          f' test.jsonl) and optionally name=, got {sorted(kwargs)}.'
      )
    config = _gsm8k.gsm8k_config(**kwargs)
  else:
    raise ValueError(
        f'Unknown builder {builder_name!r}; known: {sorted(BUILDERS)}.'
    )
  return BUILDERS[builder_name](
      config=config, data_dir=data_dir, file_format=_FILE_FORMAT
  )


def prepare(builder: Any, data_dir: str | None = None, **kwargs):
  """Prepares (generates once, then reuses) a dataset and returns its builder.

  Args:
    builder: a name in `BUILDERS` or a `tfds.core.DatasetBuilder` built with
      `file_format='array_record'`.
    data_dir: TFDS data directory; required with a name.
    **kwargs: with 'synthetic_arithmetic', the `SyntheticArithmeticConfig`
      fields; with 'jsonl_text' or 'gsm8k', `path=` and optional `name=`.

  Returns:
    The prepared builder.
  """
  if isinstance(builder, str):
    if data_dir is None:
      raise ValueError(f'prepare({builder!r}) needs data_dir.')
    builder = _make_builder(builder, data_dir, **kwargs)
  elif kwargs:
    raise TypeError(f'Builder objects take no kwargs, got {sorted(kwargs)}.')
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ValueError(
        f'{builder.info.full_name} uses {builder.info.file_format}; construct '
        f'it with file_format={_FILE_FORMAT!r} (tfrecord needs TensorFlow).'
    )
  builder.download_and_prepare()
  return builder


class DataSource:
  """Random access to one split: `len` and `[i] -> dict` of str/ints."""

  def __init__(self, source, name: str):
    self._source = source
    self._name = name

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self._source[index]
    return {
        k: v.decode() if isinstance(v, bytes) else _to_python(v)
        for k, v in record.items()
    }

  def __repr__(self) -> str:
    return f'DataSource({self._name}, {len(self)} records)'


def _to_python(value):
  if isinstance(value, np.ndarray) and value.ndim == 0:
    return value.item()
  if isinstance(value, np.generic):
    return value.item()
  return value


def data_source(builder: Any, split: str) -> DataSource:
  """Returns a random-access source over a prepared split.

  Args:
    builder: a prepared `tfds.core.DatasetBuilder`, or the directory of a
      prepared dataset version (e.g. `<data_dir>/jsonl_text/gsm8k/1.0.0`).
    split: split name, optionally sliced as TFDS allows: 'train',
      'train[:100]', 'test[50%:]'.
  """
  if isinstance(builder, (str, os.PathLike)):
    if not os.path.isfile(os.path.join(builder, 'dataset_info.json')):
      raise FileNotFoundError(
          f'{builder!r} is not a prepared TFDS dataset directory (no '
          'dataset_info.json).'
      )
    builder = tfds.builder_from_directory(os.fspath(builder))
  splits = builder.info.splits
  if split.split('[')[0] not in splits:
    raise ValueError(
        f'Split {split!r} not in {builder.info.full_name}; available: '
        f'{sorted(splits)}.'
    )
  source = builder.as_data_source(split=split)
  name = f'{builder.info.full_name}[{split}]'
  if len(source) == 0:
    raise ValueError(f'Dataset {name} is empty.')
  return DataSource(source, name)
