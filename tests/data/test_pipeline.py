"""Tests for the grain SFT loader, packing and prompt encoding."""

import collections
import json

from absl import flags
import numpy as np
import pytest

from postrain import data

_KEYS = ('inputs', 'targets', 'positions', 'segment_ids', 'loss_mask')


def _pairs_format(record):
  return record['prompt'], record['response']


def _source(num, seed=0):
  """In-memory records with prompts/responses of varied lengths."""
  rng = np.random.default_rng(seed)
  return [
      {
          'prompt': f'p{i}' + 'x' * int(rng.integers(0, 6)),
          'response': f'r{i}' + 'y' * int(rng.integers(0, 6)),
      }
      for i in range(num)
  ]


def _take(loader, n):
  return [next(loader) for _ in range(n)]


def test_hand_checked_padded_row():
  tok = data.CharTokenizer()
  a, b, c = tok.encode('abc')
  loader = data.make_sft_loader(
      [{'prompt': 'ab', 'response': 'c'}],
      tok,
      _pairs_format,
      batch_size=1,
      max_len=6,
      num_epochs=1,
  )
  batch = next(loader)
  assert set(batch) == set(_KEYS)
  np.testing.assert_array_equal(batch['inputs'], [[1, a, b, c, 0, 0]])
  np.testing.assert_array_equal(batch['targets'], [[a, b, c, 2, 0, 0]])
  np.testing.assert_array_equal(batch['loss_mask'], [[0, 0, 1, 1, 0, 0]])
  np.testing.assert_array_equal(batch['positions'], [[0, 1, 2, 3, 0, 0]])
  np.testing.assert_array_equal(batch['segment_ids'], [[1, 1, 1, 1, 0, 0]])
  for k in _KEYS:
    assert batch[k].dtype == (np.float32 if k == 'loss_mask' else np.int32)
  with pytest.raises(StopIteration):
    next(loader)


class _NoBosTokenizer(data.CharTokenizer):

  @property
  def bos_id(self):
    return None


def test_mask_without_bos():
  tok = _NoBosTokenizer()
  ex = data.tokenize_example(tok, 'ab', 'cd', max_len=8)
  np.testing.assert_array_equal(ex['inputs'], tok.encode('abcd'))
  np.testing.assert_array_equal(ex['targets'], tok.encode('bcd') + [2])
  np.testing.assert_array_equal(ex['loss_mask'], [0, 1, 1, 1])


def _segments(batches):
  """Splits packed rows back into per-example (inputs, targets, mask)."""
  out = []
  for batch in batches:
    for row in range(batch['inputs'].shape[0]):
      seg = batch['segment_ids'][row]
      assert np.all(np.diff(seg[seg > 0]) >= 0)
      for s in range(1, seg.max() + 1):
        idx = np.flatnonzero(seg == s)
        assert idx.size and np.all(np.diff(idx) == 1)
        np.testing.assert_array_equal(
            batch['positions'][row, idx], np.arange(idx.size)
        )
        out.append(
            tuple(
                tuple(batch[k][row, idx].tolist())
                for k in ('inputs', 'targets', 'loss_mask')
            )
        )
      pad = seg == 0
      assert np.all(batch['loss_mask'][row, pad] == 0)
      assert np.all(batch['positions'][row, pad] == 0)
  return out


def test_packing_keeps_every_token():
  tok = data.CharTokenizer()
  source = _source(23)
  loader = data.make_sft_loader(
      source,
      tok,
      _pairs_format,
      batch_size=3,
      max_len=24,
      num_epochs=1,
      pack=True,
      shuffle=False,
      drop_remainder=False,
  )
  batches = list(loader)
  assert max(b['segment_ids'].max() for b in batches) > 1  # Really packed.
  for b in batches:
    assert {k: v.dtype for k, v in b.items()} == {
        k: np.float32 if k == 'loss_mask' else np.int32 for k in _KEYS
    }
  expected = []
  for r in source:
    ex = data.tokenize_example(tok, r['prompt'], r['response'], max_len=24)
    expected.append(
        tuple(tuple(ex[k].tolist()) for k in ('inputs', 'targets', 'loss_mask'))
    )
  assert collections.Counter(_segments(batches)) == collections.Counter(
      expected
  )
  assert loader.stats.num_examples == 23
  assert loader.stats.num_truncated == 0
  assert sum(b['inputs'].shape[0] for b in batches) < 23


def test_truncation_is_counted_and_error_names_record():
  tok = data.CharTokenizer()
  source = [{'prompt': 'q', 'response': 'r' * n} for n in (1, 5, 9, 2, 12)]
  # Lengths without padding: 2 + n; max_len=8 truncates n=9 and n=12.
  for pack in (False, True):
    loader = data.make_sft_loader(
        source,
        tok,
        _pairs_format,
        batch_size=1,
        max_len=8,
        num_epochs=1,
        pack=pack,
    )
    batches = list(loader)
    assert loader.stats.num_truncated == 2
    assert loader.stats.num_examples == 5
    full = [b for b in batches if b['segment_ids'].min() == 1]
    assert len(full) == 2 and all(b['loss_mask'][0, -1] == 1 for b in full)
  loader = data.make_sft_loader(
      source,
      tok,
      _pairs_format,
      batch_size=1,
      max_len=8,
      num_epochs=1,
      shuffle=False,
      overflow='error',
  )
  next(loader)
  next(loader)
  with pytest.raises(Exception, match=r'record 2 of .*11 tokens exceed'):
    next(loader)


@pytest.mark.parametrize('pack', [False, True])
def test_resume_from_state(pack):
  tok = data.CharTokenizer()
  kw = dict(batch_size=2, max_len=16, seed=5, pack=pack)
  loader = data.make_sft_loader(_source(9), tok, _pairs_format, **kw)
  _take(loader, 3)
  state = loader.get_state()
  expected = _take(loader, 6)  # Runs into the second and third epoch.
  resumed = data.make_sft_loader(_source(9), tok, _pairs_format, **kw)
  resumed.set_state(state)
  for want, got in zip(expected, _take(resumed, 6)):
    for k in _KEYS:
      np.testing.assert_array_equal(want[k], got[k])


def test_seed_determines_order():
  tok = data.CharTokenizer()

  def first_inputs(seed):
    loader = data.make_sft_loader(
        _source(40), tok, _pairs_format, batch_size=4, max_len=16, seed=seed
    )
    return np.concatenate([b['inputs'] for b in _take(loader, 5)])

  np.testing.assert_array_equal(first_inputs(1), first_inputs(1))
  assert not np.array_equal(first_inputs(1), first_inputs(2))


def test_epochs_reshuffle_and_host_shards_partition():
  tok = data.CharTokenizer()
  source = [{'prompt': f'{i:02d}', 'response': 'r'} for i in range(12)]

  def prompts(loader):
    return [tok.decode(b['inputs'][0, 1:3]) for b in loader]

  epochs = prompts(
      data.make_sft_loader(
          source, tok, _pairs_format, batch_size=1, max_len=8, num_epochs=2
      )
  )
  assert (
      sorted(epochs[:12])
      == sorted(epochs[12:])
      == [f'{i:02d}' for i in range(12)]
  )
  assert epochs[:12] != epochs[12:]
  shards = [
      prompts(
          data.make_sft_loader(
              source,
              tok,
              _pairs_format,
              batch_size=1,
              max_len=8,
              num_epochs=1,
              shard_index=i,
              shard_count=3,
          )
      )
      for i in range(3)
  ]
  assert [len(s) for s in shards] == [4, 4, 4]
  assert sorted(sum(shards, [])) == sorted(epochs[:12])
  uneven = [
      prompts(
          data.make_sft_loader(
              source[:11],
              tok,
              _pairs_format,
              batch_size=1,
              max_len=8,
              num_epochs=1,
              shard_index=i,
              shard_count=2,
          )
      )
      for i in range(2)
  ]
  assert [len(s) for s in uneven] == [5, 5]
  assert not set(uneven[0]) & set(uneven[1])


def test_jsonl_missing_field_names_field_record_and_fields():
  records = [
      {'json': json.dumps({'question': 'q', 'answer': 'a'}), 'line': 1},
      {'json': json.dumps({'question': 'q'}), 'line': 2},
  ]
  fmt = data.jsonl_format('question', 'answer', response_template=' {}')
  assert fmt(records[0]) == ('q', ' a')
  loader = data.make_sft_loader(
      records,
      data.CharTokenizer(),
      fmt,
      batch_size=1,
      max_len=16,
      shuffle=False,
  )
  next(loader)
  with pytest.raises(
      Exception, match=r"record 1 .*line 2.*'answer' is missing.*\['question'\]"
  ):
    next(loader)


def test_empty_or_bad_arguments_raise():
  tok = data.CharTokenizer()
  with pytest.raises(ValueError, match='is empty'):
    data.make_sft_loader([], tok, _pairs_format, batch_size=1, max_len=8)
  with pytest.raises(ValueError, match='overflow'):
    data.make_sft_loader(
        _source(2), tok, _pairs_format, batch_size=1, max_len=8, overflow='drop'
    )
  with pytest.raises(ValueError, match='fewer than shard_count=3'):
    data.make_sft_loader(
        _source(2),
        tok,
        _pairs_format,
        batch_size=1,
        max_len=8,
        shard_index=2,
        shard_count=3,
    )
  with pytest.raises(ValueError, match='leaves no response token'):
    data.tokenize_example(tok, 'x' * 8, 'y', max_len=8)
  if not flags.FLAGS.is_parsed():
    with pytest.raises(ValueError, match='worker_count=1 needs parsed absl'):
      data.make_sft_loader(
          _source(2),
          tok,
          _pairs_format,
          batch_size=1,
          max_len=8,
          worker_count=1,
      )


def test_arithmetic_from_tfds_source(tmp_path):
  builder = data.prepare(
      'synthetic_arithmetic', str(tmp_path), num_train=6, num_test=2
  )
  source = data.data_source(builder, 'train')
  tok = data.CharTokenizer()
  loader = data.make_sft_loader(
      source,
      tok,
      data.arithmetic_format(rationale=True),
      batch_size=2,
      max_len=96,
      num_epochs=1,
  )
  for batch in loader:
    for row in range(2):
      text = tok.decode(batch['targets'][row] * (batch['loss_mask'][row] > 0))
      assert text.endswith('<eos>') and '####' in text
      record = next(
          source[i]
          for i in range(6)
          if data.is_correct(text, source[i]['answer'])
      )
      assert record is not None
  assert loader.stats.num_examples == 6


def test_encode_prompts():
  tok = data.CharTokenizer()
  tokens, lengths = data.encode_prompts(tok, ['ab', 'abcd'], max_len=6)
  a, b, c, d = tok.encode('abcd')
  np.testing.assert_array_equal(
      tokens, [[1, a, b, 0, 0, 0], [1, a, b, c, d, 0]]
  )
  np.testing.assert_array_equal(lengths, [3, 5])
  assert tokens.dtype == lengths.dtype == np.int32
  with pytest.raises(ValueError, match='Prompt 1 has 6 tokens'):
    data.encode_prompts(tok, ['a', 'abcde'], max_len=5)


def test_jsonl_end_to_end(tmp_path):
  rows = [{'q': f'{i}+{i}?', 'a': str(2 * i)} for i in range(5)]
  (tmp_path / 'train.jsonl').write_text(
      ''.join(json.dumps(r) + '\n' for r in rows)
  )
  builder = data.prepare(
      'jsonl_text', str(tmp_path / 'tfds'), path=str(tmp_path), name='sums'
  )
  source = data.data_source(builder, 'train')
  tok = data.CharTokenizer()
  fmt = data.jsonl_format('q', 'a', response_template=' #### {}')
  loader = data.make_sft_loader(
      source, tok, fmt, batch_size=5, max_len=16, num_epochs=1
  )
  batch = next(loader)
  answers = sorted(
      data.extract_answer(tok.decode(t * (m > 0)))
      for t, m in zip(batch['targets'], batch['loss_mask'])
  )
  assert answers == sorted(r['a'] for r in rows)
