"""Synthetic multi-step arithmetic with a step-by-step rationale and verifier.

A question chains `steps` operations left to right, e.g.
`Compute ((3+4)*2)-5.`; its rationale writes one line per step
(`3+4=7`, `7*2=14`, `14-5=9`) and the answer is the last value (`9`). Every
intermediate value stays in `[0, value_max]`, so a tiny character model can
learn it.

Splits are disjoint by construction: a question belongs to `test` when a
stable hash of its text falls in the test bucket, to `train` otherwise, and
each split's generator rejects questions of the other split.
"""

import dataclasses
import hashlib

import numpy as np

ANSWER_MARKER = '####'
SPLITS = ('train', 'test')
_OPS = {
    '+': lambda a, b: a + b,
    '-': lambda a, b: a - b,
    '*': lambda a, b: a * b,
}
# Decoders render eos as one of these; the answer stops there.
DEFAULT_STOPS = ('\n', '<eos>', '</s>', '<|endoftext|>', '<|im_end|>')


def split_of_question(question: str, test_percent: int = 10) -> str:
  """Returns the split ('train' or 'test') that owns `question`."""
  digest = hashlib.blake2b(question.encode(), digest_size=8).digest()
  bucket = int.from_bytes(digest, 'little') % 100
  return 'test' if bucket < test_percent else 'train'


@dataclasses.dataclass(frozen=True)
class ArithmeticTask:
  """Deterministic generator of arithmetic examples.

  Attributes:
    min_steps: fewest operations per question (>= 1).
    max_steps: most operations per question.
    operand_max: operands are drawn from `[0, operand_max]`.
    value_max: every intermediate value stays in `[0, value_max]`.
    operators: subset of '+-*'.
    seed: task seed; examples depend only on (seed, split, index).
    test_percent: share of the question space (in %) owned by `test`.
  """

  min_steps: int = 2
  max_steps: int = 3
  operand_max: int = 9
  value_max: int = 99
  operators: str = '+-*'
  seed: int = 0
  test_percent: int = 10

  def __post_init__(self):
    if not 1 <= self.min_steps <= self.max_steps:
      raise ValueError(
          f'Need 1 <= min_steps <= max_steps, got min_steps={self.min_steps},'
          f' max_steps={self.max_steps}.'
      )
    if not self.operators or set(self.operators) - set(_OPS):
      raise ValueError(
          f'operators={self.operators!r} must be a non-empty subset of '
          f'{"".join(_OPS)!r}.'
      )
    if self.operand_max < 1 or self.value_max < self.operand_max:
      raise ValueError(
          f'Need 1 <= operand_max <= value_max, got operand_max='
          f'{self.operand_max}, value_max={self.value_max}.'
      )
    if not 0 < self.test_percent < 100:
      raise ValueError(f'test_percent={self.test_percent} not in (0, 100).')

  def _operand(self, rng, op: str, value: int) -> int:
    """Draws an operand for `op` keeping the result in [0, value_max]."""
    if op == '+':
      high = min(self.operand_max, self.value_max - value)
    elif op == '-':
      high = min(self.operand_max, value)
    else:
      high = min(self.operand_max, self.value_max // max(value, 1))
    return int(rng.integers(0, high + 1))

  def _draw(self, rng) -> dict[str, str]:
    value = int(rng.integers(0, self.operand_max + 1))
    expr = str(value)
    lines = []
    num_steps = int(rng.integers(self.min_steps, self.max_steps + 1))
    for step in range(num_steps):
      op = self.operators[int(rng.integers(len(self.operators)))]
      operand = self._operand(rng, op, value)
      result = _OPS[op](value, operand)
      lines.append(f'{value}{op}{operand}={result}')
      expr = f'{expr}{op}{operand}' if step == 0 else f'({expr}){op}{operand}'
      value = result
    return {
        'question': f'Compute {expr}.',
        'rationale': '\n'.join(lines),
        'answer': str(value),
    }

  def example(self, index: int, split: str = 'train') -> dict[str, str]:
    """Returns example `index` of `split`; depends only on seed/split/index.

    Args:
      index: non-negative example index.
      split: 'train' or 'test'.

    Returns:
      `{'question': str, 'rationale': str, 'answer': str}`.
    """
    if split not in SPLITS:
      raise ValueError(f'split={split!r} not in {SPLITS}.')
    if index < 0:
      raise ValueError(f'index={index} must be >= 0.')
    rng = np.random.default_rng([self.seed, SPLITS.index(split), index])
    for _ in range(10_000):
      ex = self._draw(rng)
      if split_of_question(ex['question'], self.test_percent) == split:
        return ex
    raise RuntimeError(
        f'No {split} question found for index {index}: the question space of'
        f' {self} is too small.'
    )


def format_prompt(ex: dict[str, str]) -> str:
  """Returns the prompt: `'Q: <question>\\nA:'`."""
  return f'Q: {ex["question"]}\nA:'


HINT_MARKER = 'H'


def hinted_prompt(ex: dict[str, str]) -> str:
  """The rationalisation prompt: the answer as a hint, `'Q: … H <a>\\nA:'`.

  STaR's rationalisation (Zelikman et al., arXiv:2203.14465) and TRICE's
  hinted initialisation (Phan et al., arXiv:2312.02179) sample a rationale
  given the answer; the rationale is stored and scored under the plain
  `format_prompt`, without the hint.
  """
  return f'Q: {ex["question"]} {HINT_MARKER} {ex["answer"]}\nA:'


def _unit(text: str, salt: str) -> float:
  """A stable uniform number in [0, 1) from `text` (no global RNG)."""
  digest = hashlib.blake2b(f'{salt}:{text}'.encode(), digest_size=8).digest()
  return int.from_bytes(digest, 'little') / 2.0**64


def noisy_rationale(ex: dict[str, str], noise: float,
                    seed: int = 0) -> tuple[str, str]:
  """The rationale with, with probability `noise`, one arithmetic slip.

  The slip changes one step's result by ±1 or ±2 (staying >= 0) and the
  later steps continue from the wrong value, so the rationale stays
  self-consistent but ends in a wrong answer. Deterministic in (question,
  seed): a corpus for a competent but imperfect base model (the E1 base).

  Returns:
    `(rationale, final value)`; both unchanged when no slip is drawn.
  """
  if not 0.0 <= noise <= 1.0:
    raise ValueError(f'noise={noise} must be in [0, 1].')
  if _unit(ex['question'], f'noise{seed}') >= noise:
    return ex['rationale'], ex['answer']
  steps = [_parse_step(line) for line in ex['rationale'].split('\n')]
  where = int(_unit(ex['question'], f'where{seed}') * len(steps))
  delta = (-2, -1, 1, 2)[int(_unit(ex['question'], f'delta{seed}') * 4)]
  lines, value = [], steps[0][0]
  for i, (_, op, operand, _) in enumerate(steps):
    result = _OPS[op](value, operand)
    if i == where:
      result = result + delta if result + delta >= 0 else result - delta
    lines.append(f'{value}{op}{operand}={result}')
    value = result
  return '\n'.join(lines), str(value)


def _parse_step(line: str) -> tuple[int, str, int, int]:
  lhs, rhs = line.split('=')
  for i, ch in enumerate(lhs[1:], 1):  # operands are non-negative
    if ch in _OPS:
      return int(lhs[:i]), ch, int(lhs[i + 1:]), int(rhs)
  raise ValueError(f'not a rationale step: {line!r}')


def format_target(ex: dict[str, str], rationale: bool = True) -> str:
  """Returns the response, ending with `'#### <answer>'`.

  Args:
    ex: an example with 'rationale' and 'answer'.
    rationale: whether to write the step lines before the final answer.
  """
  if rationale:
    return f' {ex["rationale"]}\n{ANSWER_MARKER} {ex["answer"]}'
  return f' {ANSWER_MARKER} {ex["answer"]}'


def extract_answer(
    text: str, stops: tuple[str, ...] = DEFAULT_STOPS
) -> str | None:
  """Returns the text after the last answer marker, up to a stop, stripped.

  >>> extract_answer(' 3+4=7\\n#### 7<eos>')
  '7'

  Args:
    text: model output or gold target.
    stops: strings that end the answer (newline and common eos renderings).

  Returns:
    The answer, or None when there is no marker or nothing follows it.
  """
  start = text.rfind(ANSWER_MARKER)
  if start < 0:
    return None
  rest = text[start + len(ANSWER_MARKER) :]
  for stop in stops:
    cut = rest.find(stop)
    if cut >= 0:
      rest = rest[:cut]
  rest = rest.strip()
  return rest or None


def is_correct(text: str, answer: str) -> bool:
  """Whether the answer extracted from `text` equals `answer` exactly."""
  extracted = extract_answer(text)
  return extracted is not None and extracted == str(answer).strip()
