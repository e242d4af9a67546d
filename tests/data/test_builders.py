"""Tests for the TFDS builders and data sources (without TensorFlow)."""

import importlib.util
import json
import sys

import pytest

from postrain import data


class _HideTensorFlow:
  """Wraps a meta path finder so that it never finds tensorflow."""

  def __init__(self, finder):
    self._finder = finder

  def __getattr__(self, name):
    return getattr(self._finder, name)

  def find_spec(self, fullname, path=None, target=None):
    if fullname.split('.')[0] == 'tensorflow':
      return None
    find_spec = getattr(self._finder, 'find_spec', None)
    return find_spec and find_spec(fullname, path, target)


@pytest.fixture(autouse=True)
def no_tensorflow(monkeypatch):
  """Building and reading must work as if TensorFlow were not installed."""
  # etils treats 'tensorflow' in sys.modules as "TF is available".
  assert 'tensorflow' not in sys.modules, (
      'something imported TensorFlow; postrain must run without it')
  hidden = [_HideTensorFlow(f) for f in sys.meta_path]
  monkeypatch.setattr(sys, 'meta_path', hidden)
  yield
  assert 'tensorflow' not in sys.modules


def test_synthetic_arithmetic_round_trip(tmp_path):
  kw = dict(num_train=30, num_test=8, max_steps=4, operand_max=5, seed=2)
  builder = data.prepare('synthetic_arithmetic', str(tmp_path), **kw)
  task = data.arithmetic_config(**kw).task()
  for split, num in (('train', 30), ('test', 8)):
    source = data.data_source(builder, split)
    assert len(source) == num
    records = [source[i] for i in range(num)]
    assert sorted(r['index'] for r in records) == list(range(num))
    for r in records:
      assert isinstance(r['question'], str)
      expected = task.example(r['index'], split)
      assert {k: r[k] for k in expected} == expected
  files = [p.name for p in tmp_path.glob('synthetic_arithmetic/*/1.0.0/*')]
  assert any('array_record' in f for f in files), files


def test_prepare_reuses_and_reads_from_directory(tmp_path):
  builder = data.prepare(
      'synthetic_arithmetic', str(tmp_path), num_train=5, num_test=2
  )
  again = data.prepare(
      'synthetic_arithmetic', str(tmp_path), num_train=5, num_test=2
  )
  assert again.data_dir == builder.data_dir
  source = data.data_source(builder.data_dir, 'train')
  assert [source[i] for i in range(5)] == [
      data.data_source(builder, 'train')[i] for i in range(5)
  ]
  assert len(data.data_source(builder, 'train[:3]')) == 3
  with pytest.raises(ValueError, match=r"'validation' not in .*\['test', "):
    data.data_source(builder, 'validation')
  with pytest.raises(FileNotFoundError, match='not a prepared'):
    data.data_source(str(tmp_path / 'nothing'), 'train')


def _write(path, records):
  path.write_text(''.join(json.dumps(r) + '\n' for r in records))


def test_jsonl_directory(tmp_path):
  jsonl = tmp_path / 'gsm'
  jsonl.mkdir()
  train = [{'question': f'q{i}', 'answer': str(i), 'n': i} for i in range(7)]
  _write(jsonl / 'train.jsonl', train)
  (jsonl / 'test.jsonl').write_text('{"question": "t", "answer": "x"}\n\n')
  builder = data.prepare('jsonl_text', str(tmp_path / 'tfds'), path=str(jsonl))
  assert builder.info.full_name == 'jsonl_text/gsm/1.0.0'
  source = data.data_source(builder, 'train')
  got = sorted(
      (json.loads(source[i]['json']) for i in range(7)), key=lambda r: r['n']
  )
  assert got == train
  lines = sorted(source[i]['line'] for i in range(7))
  assert lines == list(range(1, 8))
  test = data.data_source(builder, 'test')
  assert len(test) == 1 and json.loads(test[0]['json'])['answer'] == 'x'


def test_jsonl_single_file(tmp_path):
  file = tmp_path / 'rows.jsonl'
  _write(file, [{'a': 1}, {'a': 2}])
  builder = data.prepare(
      'jsonl_text', str(tmp_path / 'tfds'), path=str(file), name='rows'
  )
  assert list(builder.info.splits) == ['train']
  assert len(data.data_source(builder, 'train')) == 2


def test_jsonl_errors(tmp_path):
  tfds_dir = str(tmp_path / 'tfds')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    data.prepare('jsonl_text', tfds_dir, path=str(tmp_path / 'missing'))
  (tmp_path / 'empty_dir').mkdir()
  with pytest.raises(FileNotFoundError, match='No <split>.jsonl'):
    data.prepare('jsonl_text', tfds_dir, path=str(tmp_path / 'empty_dir'))
  (tmp_path / 'empty.jsonl').write_text('\n')
  with pytest.raises(ValueError, match='holds no records'):
    data.prepare('jsonl_text', tfds_dir, path=str(tmp_path / 'empty.jsonl'))
  (tmp_path / 'bad.jsonl').write_text('{"a": 1}\n{"a": \n')
  with pytest.raises(ValueError, match=r'bad.jsonl:2: invalid JSON'):
    data.prepare('jsonl_text', tfds_dir, path=str(tmp_path / 'bad.jsonl'))
  tfrecord = data.SyntheticArithmetic(
      config=data.arithmetic_config(num_train=2, num_test=1), data_dir=tfds_dir
  )
  with pytest.raises(ValueError, match="file_format='array_record'"):
    data.prepare(tfrecord)
  with pytest.raises(ValueError, match='Unknown builder'):
    data.prepare('mnist', tfds_dir)


def test_tensorflow_is_hidden():
  with pytest.raises(ImportError):
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  assert importlib.util.find_spec('tensorflow') is None
