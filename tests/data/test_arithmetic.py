"""Tests for the synthetic arithmetic task and its verifier."""

import re

import pytest

from postrain import data


def _evaluate(question):
  expr = re.fullmatch(r'Compute (.*)\.', question).group(1)
  assert re.fullmatch(r'[0-9+\-*() ]+', expr)
  return eval(expr)  # pylint: disable=eval-used


def test_examples_are_deterministic_and_vary():
  task = data.ArithmeticTask(seed=3)
  assert task.example(7) == data.ArithmeticTask(seed=3).example(7)
  assert task.example(7, 'test') == task.example(7, 'test')
  questions = {task.example(i)['question'] for i in range(50)}
  assert len(questions) > 40
  other = data.ArithmeticTask(seed=4)
  assert [task.example(i) for i in range(20)] != [
      other.example(i) for i in range(20)
  ]


@pytest.mark.parametrize('min_steps,max_steps', [(1, 1), (2, 4)])
def test_rationale_is_correct_and_bounded(min_steps, max_steps):
  task = data.ArithmeticTask(
      min_steps=min_steps, max_steps=max_steps, operand_max=7, value_max=50
  )
  for i in range(300):
    ex = task.example(i, 'train' if i % 2 else 'test')
    lines = ex['rationale'].split('\n')
    assert min_steps <= len(lines) <= max_steps
    previous = None
    for line in lines:
      lhs, rhs = line.split('=')
      assert eval(lhs) == int(rhs)  # pylint: disable=eval-used
      assert 0 <= int(rhs) <= 50
      left = int(re.match(r'\d+', lhs).group())
      assert previous is None or left == previous
      previous = int(rhs)
    assert str(previous) == ex['answer'] == str(_evaluate(ex['question']))


def test_operators_knob():
  task = data.ArithmeticTask(operators='+', max_steps=4)
  for i in range(50):
    assert '-' not in task.example(i)['question']
    assert '*' not in task.example(i)['question']


def test_splits_are_disjoint():
  task = data.ArithmeticTask()
  train = {task.example(i, 'train')['question'] for i in range(3000)}
  test = [task.example(i, 'test')['question'] for i in range(300)]
  assert not train.intersection(test)
  assert all(data.split_of_question(q) == 'test' for q in test)


def test_bad_knobs_raise():
  with pytest.raises(ValueError, match='min_steps'):
    data.ArithmeticTask(min_steps=3, max_steps=2)
  with pytest.raises(ValueError, match='operators'):
    data.ArithmeticTask(operators='/')
  with pytest.raises(ValueError, match='split'):
    data.ArithmeticTask().example(0, 'validation')


def test_format():
  ex = {
      'question': 'Compute (3+4)*2.',
      'rationale': '3+4=7\n7*2=14',
      'answer': '14',
  }
  assert data.format_prompt(ex) == 'Q: Compute (3+4)*2.\nA:'
  assert data.format_target(ex) == ' 3+4=7\n7*2=14\n#### 14'
  assert data.format_target(ex, rationale=False) == ' #### 14'


def test_verifier_accepts_every_gold_target():
  task = data.ArithmeticTask(max_steps=4)
  for i in range(400):
    ex = task.example(i, 'test' if i % 4 == 0 else 'train')
    for rationale in (True, False):
      target = data.format_target(ex, rationale=rationale)
      assert data.extract_answer(target) == ex['answer']
      assert data.is_correct(target, ex['answer'])
      assert data.is_correct(target + '<eos><pad>', ex['answer'])
      assert data.is_correct(target + '\nQ: more', ex['answer'])


def test_verifier_rejects_corrupted_targets():
  task = data.ArithmeticTask()
  for i in range(200):
    ex = task.example(i)
    target = data.format_target(ex)
    wrong = str((int(ex['answer'][0]) + 1) % 10) + ex['answer'][1:]
    assert not data.is_correct(
        target[: -len(ex['answer'])] + wrong, ex['answer']
    )
    assert not data.is_correct(target.replace('####', ''), ex['answer'])
    assert not data.is_correct(target + '0', ex['answer'])
  assert not data.is_correct('', '9')
  assert data.extract_answer('') is None
  assert data.extract_answer('#### \n9') is None
  assert data.extract_answer('#### 3\n#### 9</s>junk') == '9'
