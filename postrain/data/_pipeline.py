"""grain pipelines: tokenize, truncate, pad or pack, batch; checkpointable.

A training row is `seq = [bos] + prompt + response + [eos]` with
`inputs = seq[:-1]`, `targets = seq[1:]` and `loss_mask = 1` exactly on the
targets that belong to `response + [eos]`. Batches are numpy dicts:

  inputs, targets, positions, segment_ids: int32 [B, T]
  loss_mask: float32 [B, T]

`segment_ids` number the examples of a row 1, 2, ... (0 on padding) and
`positions` restart at 0 for each example.
"""

import dataclasses
import threading
from typing import Any, Sequence

from absl import flags
from absl import logging
import grain
import grain.experimental
import numpy as np

from postrain.data import _formats
from postrain.data import _tokenizers

_OVERFLOW = ('truncate', 'error')
_SEQ_KEYS = ('inputs', 'targets', 'loss_mask', 'num_truncated')
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=64)


@dataclasses.dataclass
class LoaderStats:
  """Counts over the batches delivered so far by one loader.

  Attributes:
    num_batches: batches returned by `next`.
    num_examples: examples in those batches.
    num_truncated: examples among them cut to `max_len` (overflow='truncate').
  """

  num_batches: int = 0
  num_examples: int = 0
  num_truncated: int = 0
  _lock: threading.Lock = dataclasses.field(
      default_factory=threading.Lock, repr=False, compare=False
  )

  def _update(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pops `num_truncated` from `batch` and adds it to the counts."""
    truncated = int(batch.pop('num_truncated').sum())
    examples = int(batch['segment_ids'].max(axis=1).sum())
    with self._lock:
      self.num_batches += 1
      self.num_examples += examples
      self.num_truncated += truncated
    return batch


def tokenize_example(
    tokenizer: _tokenizers.Tokenizer,
    prompt: str,
    response: str,
    *,
    max_len: int,
    overflow: str = 'truncate',
    name: str = 'example',
) -> dict[str, np.ndarray]:
  """Tokenizes one (prompt, response) pair into unpadded training arrays.

  Args:
    tokenizer: the tokenizer.
    prompt: prompt text (no loss).
    response: response text (loss on it and on eos).
    max_len: row length T; longer sequences overflow.
    overflow: 'truncate' (cut from the right) or 'error'. Either way a
      prompt that leaves no response token within max_len raises, since its
      loss mask would be empty.
    name: how errors refer to this example.

  Returns:
    `inputs`, `targets` (int32 [n]), `loss_mask` (float32 [n]) with n <=
    max_len, and `num_truncated` (int32 [1], 1 when it was cut).
  """
  prefix = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
  prompt_ids = prefix + tokenizer.encode(prompt)
  response_ids = tokenizer.encode(response) + [tokenizer.eos_id]
  if not prompt_ids:
    raise ValueError(f'{name}: empty prompt and no bos token to start from.')
  seq = np.asarray(prompt_ids + response_ids, np.int32)
  loss_mask = np.zeros(len(seq) - 1, np.float32)
  loss_mask[len(prompt_ids) - 1 :] = 1.0
  truncated = len(seq) - 1 > max_len
  if truncated:
    if overflow == 'error':
      raise ValueError(
          f'{name}: {len(seq) - 1} tokens exceed max_len={max_len} '
          "(overflow='error')."
      )
    if len(prompt_ids) >= max_len + 1:
      raise ValueError(
          f'{name}: prompt of {len(prompt_ids)} tokens leaves no response '
          f'token within max_len={max_len}.'
      )
  end = min(len(seq) - 1, max_len)
  return {
      'inputs': seq[:-1][:end],
      'targets': seq[1:][:end],
      'loss_mask': loss_mask[:end],
      'num_truncated': np.asarray([truncated], np.int32),
  }


def _pad_row(ex: dict[str, np.ndarray], max_len: int, pad_id: int):
  """Pads one example to `max_len` and adds positions/segment_ids."""
  n = len(ex['inputs'])
  pad = max_len - n
  return {
      'inputs': np.pad(ex['inputs'], (0, pad), constant_values=pad_id),
      'targets': np.pad(ex['targets'], (0, pad), constant_values=pad_id),
      'loss_mask': np.pad(ex['loss_mask'], (0, pad)),
      'positions': np.pad(np.arange(n, dtype=np.int32), (0, pad)),
      'segment_ids': np.pad(np.ones(n, np.int32), (0, pad)),
      'num_truncated': ex['num_truncated'],
  }


def _rename_packed(row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {
      'inputs': row['inputs'],
      'targets': row['targets'],
      'loss_mask': row['loss_mask'],
      'positions': row['inputs_positions'].astype(np.int32),
      'segment_ids': row['inputs_segment_ids'].astype(np.int32),
      'num_truncated': row['num_truncated'],
  }


def _describe(source) -> str:
  text = repr(source)
  if len(text) <= 120:
    return text
  return f'<{type(source).__name__} of {len(source)} records>'


class _ReadAndTokenize:
  """Record index -> tokenized example; errors name the record."""

  def __init__(self, source, tokenizer, format_fn, max_len, overflow):
    self._source = source
    self._tokenizer = tokenizer
    self._format_fn = format_fn
    self._max_len = max_len
    self._overflow = overflow

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    record = self._source[index]
    name = f'record {index} of {_describe(self._source)}'
    if isinstance(record, dict) and 'line' in record:
      name += f' (line {record["line"]})'
    try:
      prompt, response = self._format_fn(record)
    except (KeyError, ValueError) as e:
      msg = e.args[0] if isinstance(e, KeyError) and e.args else e
      raise ValueError(f'{name}: {msg}') from e
    ex = tokenize_example(
        self._tokenizer,
        prompt,
        response,
        max_len=self._max_len,
        overflow=self._overflow,
        name=name,
    )
    if ex['num_truncated'][0]:
      logging.log_every_n(logging.WARNING, 'Truncated %s.', 100, name)
    return ex


@dataclasses.dataclass(frozen=True)
class SftLoader:
  """A checkpointable iterator of SFT batches plus its counts.

  Attributes:
    iterator: the grain `DatasetIterator`; its `get_state()`/`set_state()`
      resume exactly (save it with the train state).
    stats: `LoaderStats` over the batches delivered so far.
  """

  iterator: grain.DatasetIterator
  stats: LoaderStats

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self.iterator)

  def get_state(self) -> dict[str, Any]:
    return self.iterator.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self.iterator.set_state(state)


def _check_args(
    source,
    batch_size,
    max_len,
    overflow,
    num_epochs,
    shard_index,
    shard_count,
    worker_count,
):
  """Raises a ValueError naming the first bad argument."""
  if worker_count > 0 and not flags.FLAGS.is_parsed():
    raise ValueError(
        f'worker_count={worker_count} needs parsed absl flags (grain reads '
        'its own flags): run under absl.app.run or call flags.FLAGS(argv).'
    )
  if overflow not in _OVERFLOW:
    raise ValueError(f'overflow={overflow!r} not in {_OVERFLOW}.')
  if batch_size < 1 or max_len < 2:
    raise ValueError(
        f'Need batch_size >= 1 and max_len >= 2, got {batch_size}, {max_len}.'
    )
  if not 0 <= shard_index < shard_count:
    raise ValueError(
        f'Need 0 <= shard_index < shard_count, got {shard_index}, '
        f'{shard_count}.'
    )
  if len(source) == 0:
    raise ValueError(f'Source {_describe(source)} is empty.')
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f'num_epochs={num_epochs} must be >= 1 or None.')
  if len(source) < shard_count:
    raise ValueError(
        f'Source {_describe(source)} has {len(source)} records, fewer than '
        f'shard_count={shard_count}: a shard would be empty.'
    )


def make_sft_loader(
    source: Sequence[Any],
    tokenizer: _tokenizers.Tokenizer,
    format_fn: _formats.FormatFn,
    *,
    batch_size: int,
    max_len: int,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    pack: bool = False,
    overflow: str = 'truncate',
    shard_index: int = 0,
    shard_count: int = 1,
    worker_count: int = 0,
    drop_remainder: bool = True,
    read_options: grain.ReadOptions | None = None,
) -> SftLoader:
  """Builds a deterministic, checkpointable SFT batch iterator.

  Order: this host's records `shard_index::shard_count` (the last
  `len % shard_count` records are dropped, so shards are equal), shuffled by
  `seed` (reshuffled each epoch), repeated `num_epochs` times (None:
  forever), tokenized, then padded or packed (first-fit, `batch_size` bins)
  and batched.

  Args:
    source: random access records (`len`, `[i]`), e.g. `data_source(...)`.
    tokenizer: the tokenizer.
    format_fn: record -> (prompt_text, response_text).
    batch_size: rows per batch B (per host).
    max_len: row length T.
    seed: shuffle seed.
    shuffle: whether to shuffle.
    num_epochs: passes over the data; None repeats forever.
    pack: whether to pack several examples per row.
    overflow: 'truncate' (cut from the right, counted in `stats`) or
      'error' (raise naming the record).
    shard_index: this host's shard.
    shard_count: number of hosts.
    worker_count: grain worker processes; 0 reads in this process. With
      workers, each one batches its own slice of the records, so the order
      depends on worker_count: keep it fixed when resuming.
    drop_remainder: drop an incomplete last batch (keeps shapes static).
    read_options: grain read threads and prefetch buffer; the default (2
      threads, 64 elements) suits cheap records; grain's own starts 16.

  Returns:
    An `SftLoader` yielding the batches described in the module docstring.
  """
  _check_args(
      source,
      batch_size,
      max_len,
      overflow,
      num_epochs,
      shard_index,
      shard_count,
      worker_count,
  )
  # Equal shards, so that every host runs the same number of steps.
  usable = len(source) - len(source) % shard_count
  if usable < len(source):
    logging.warning(
        'Dropping the last %d of %d records for %d equal host shards.',
        len(source) - usable,
        len(source),
        shard_count,
    )
  ds = grain.MapDataset.range(usable)[shard_index::shard_count]
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat(num_epochs)
  read = _ReadAndTokenize(source, tokenizer, format_fn, max_len, overflow)
  it_ds = ds.map(read).to_iter_dataset(read_options or _READ_OPTIONS)
  pad_id = tokenizer.pad_id
  if pack:
    lengths = {k: max_len for k in _SEQ_KEYS}
    padding = {
        'inputs': pad_id,
        'targets': pad_id,
        'loss_mask': 0.0,
        'num_truncated': 0,
    }
    it_ds = grain.experimental.FirstFitPackIterDataset(
        it_ds,
        length_struct=lengths,
        num_packing_bins=batch_size,
        shuffle_bins=False,
        padding_struct=padding,
    ).map(_rename_packed)
  else:
    it_ds = it_ds.map(lambda ex: _pad_row(ex, max_len, pad_id))
  it_ds = it_ds.batch(batch_size, drop_remainder=drop_remainder)
  if worker_count > 0:
    it_ds = it_ds.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=worker_count)
    )
  stats = LoaderStats()
  it_ds = it_ds.map(stats._update)  # pylint: disable=protected-access
  return SftLoader(iter(it_ds), stats)


def encode_prompts(
    tokenizer: _tokenizers.Tokenizer, texts: Sequence[str], max_len: int
) -> tuple[np.ndarray, np.ndarray]:
  """Encodes prompts for the sampler: `[bos] + prompt`, right-padded.

  Args:
    tokenizer: the tokenizer.
    texts: B prompt strings.
    max_len: P, the padded length; a longer prompt raises naming its index.

  Returns:
    tokens int32 [B, P] (pad_id after each prompt) and lengths int32 [B].
  """
  if not texts:
    raise ValueError('encode_prompts got no texts.')
  prefix = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
  tokens = np.full((len(texts), max_len), tokenizer.pad_id, np.int32)
  lengths = np.zeros(len(texts), np.int32)
  for i, text in enumerate(texts):
    ids = prefix + tokenizer.encode(text)
    if len(ids) > max_len or not ids:
      raise ValueError(
          f'Prompt {i} has {len(ids)} tokens; need 1..max_len={max_len}: '
          f'{text[:80]!r}'
      )
    tokens[i, : len(ids)] = ids
    lengths[i] = len(ids)
  return tokens, lengths
