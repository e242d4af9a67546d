"""Tests for the GSM8K builder, answer extraction and verifier (local JSONL)."""

import json
import sys

import pytest

from postrain import data

_TRAIN = [
    dict(question='Natalia sold 48 clips in April and half as many in May. '
                  'How many did she sell?',
         answer='In May she sold 48/2 = <<48/2=24>>24 clips.\n'
                'Altogether 48+24 = <<48+24=72>>72 clips.\n#### 72'),
    dict(question='A house costs $1,000 a month. What is the yearly rent?',
         answer='12*1000 = <<12*1000=12000>>12000\n#### 12,000'),
    dict(question='The temperature fell 5 degrees from 2. What is it now?',
         answer='2-5 = <<2-5=-3>>-3\n#### -3'),
    dict(question='Half of 5?', answer='5/2 = <<5/2=2.5>>2.5\n#### 2.5'),
]
_TEST = [dict(question='What is 2+2?', answer='2+2=<<2+2=4>>4\n#### 4')]


def _write(path, name, records, extra=''):
  with open(path / name, 'w') as f:
    for r in records:
      f.write(json.dumps(r) + '\n\n')  # blank lines are skipped
    f.write(extra)


@pytest.mark.parametrize('text,want', [
    ('#### 72', '72'),
    ('so 12*1000 = 12000\n#### 12,000', '12000'),
    ('#### $1,200.', '1200'),
    ('#### -3', '-3'),
    ('#### 2.50', '2.5'),
    ('#### \u22124', '-4'),  # unicode minus
    ('#### 18 dollars\nQ: next question 99', '18'),
    ('#### 7\n#### 8', '8'),  # the last marker wins
    ('#### 7<eos>#### 8', '7'),  # nothing after eos counts
    ('She pays $1,200. Then 3 more, so 1,203.', '1203'),  # no marker
    ('The answer is 42.\n', '42'),
    ('Total: -7.5 degrees', '-7.5'),
    ('#### none\nbut 6 apples', '6'),  # marker without number: fall back
    ('#### 5<|endoftext|> 9', '5'),
    ('no number at all', None),
    ('', None),
    ('#### 0.0', '0'),
])
def test_extract_answer(text, want):
  assert data.extract_gsm8k_answer(text) == want


def test_verifier_is_numeric():
  assert data.gsm8k_is_correct('#### 1,000', '1000')
  assert data.gsm8k_is_correct('so $1000.00.', '1000')
  assert data.gsm8k_is_correct('#### 2.5', '2.50')
  assert data.gsm8k_is_correct('#### -3', '-3')
  assert not data.gsm8k_is_correct('#### 3', '-3')
  assert not data.gsm8k_is_correct('#### 2.51', '2.5')
  assert not data.gsm8k_is_correct('no answer', '4')
  assert not data.gsm8k_is_correct('#### 4', 'four')


def test_parse_gold_and_errors():
  ex = data.parse_gsm8k(_TRAIN[0])
  assert ex['answer'] == '72'
  assert ex['rationale'].endswith('<<48+24=72>>72 clips.')
  assert '####' not in ex['rationale']
  with pytest.raises(ValueError, match=r'x.jsonl:3.*####'):
    data.parse_gsm8k(dict(question='q', answer='just 5'), 'x.jsonl:3')
  with pytest.raises(ValueError, match="'answer' missing"):
    data.parse_gsm8k(dict(question='q', solution='#### 5'))
  assert data.strip_calculator('48/2 = <<48/2=24>>24') == '48/2 = 24'


def test_builder_round_trip_and_format(tmp_path):
  src = tmp_path / 'gsm8k'
  src.mkdir()
  _write(src, 'train.jsonl', _TRAIN)
  _write(src, 'test.jsonl', _TEST)
  builder = data.prepare('gsm8k', str(tmp_path / 'tfds'), path=str(src))
  assert sorted(builder.info.splits) == ['test', 'train']
  train = data.data_source(builder, 'train')
  records = sorted((train[i] for i in range(len(train))),
                   key=lambda r: r['index'])
  assert [r['index'] for r in records] == [0, 1, 2, 3]
  assert [r['line'] for r in records] == [1, 3, 5, 7]
  assert [r['answer'] for r in records] == ['72', '12000', '-3', '2.5']
  for r, raw in zip(records, _TRAIN):
    assert r['question'] == raw['question']
    assert data.gsm8k_is_correct(raw['answer'], r['answer'])
  prompt, target = data.gsm8k_format()(records[0])
  assert prompt == f'Q: {_TRAIN[0]["question"]}\nA:'
  assert target == (' In May she sold 48/2 = 24 clips.\n'
                    'Altogether 48+24 = 72 clips.\n#### 72')
  assert data.extract_gsm8k_answer(target) == '72'
  assert data.extract_answer(target) == '72'  # the arithmetic verifier too
  _, with_calc = data.gsm8k_format(calculator=True)(records[0])
  assert '<<48/2=24>>' in with_calc
  _, direct = data.gsm8k_format(rationale=False)(records[1])
  assert direct == ' #### 12000'
  assert len(data.data_source(builder, 'test')) == 1
  assert 'tensorflow' not in sys.modules


def test_builder_errors(tmp_path):
  bad = tmp_path / 'bad'
  bad.mkdir()
  _write(bad, 'train.jsonl', _TRAIN[:1],
         extra=json.dumps(dict(question='q', answer='no marker')) + '\n')
  with pytest.raises(ValueError, match=r'train.jsonl:3: answer has no'):
    data.prepare('gsm8k', str(tmp_path / 'tfds'), path=str(bad))
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match='train.jsonl or test.jsonl'):
    data.prepare('gsm8k', str(tmp_path / 'tfds'), path=str(empty))
  with pytest.raises(TypeError, match='path='):
    data.prepare('gsm8k', str(tmp_path / 'tfds'), file=str(empty))
