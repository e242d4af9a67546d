"""GSM8K from local JSONL files: TFDS builder, answer extraction, verifier.

Cobbe et al., *Training Verifiers to Solve Math Word Problems*
(arXiv:2110.14168). Each line of `train.jsonl` / `test.jsonl` holds
`{"question": ..., "answer": ...}`; the answer field is a worked solution
with calculator annotations `<<48/2=24>>` and a last line `#### 72`.
Nothing is downloaded: point `path` at a directory holding the files.

Gold answers must have a `#### <number>` line (a record without one stops
preparation with its file and line); model outputs are parsed leniently
(commas, `$`, trailing period, and the last number when `####` is missing).
"""

import dataclasses
import decimal
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from postrain.data import _arithmetic

SPLIT_FILES = {'train': 'train.jsonl', 'test': 'test.jsonl'}
# End-of-sequence renderings: the output ends there (newlines do not).
EOS = tuple(s for s in _arithmetic.DEFAULT_STOPS if s != '\n')
_CALCULATOR = re.compile(r'<<[^<>]*>>')
# A number with optional sign, `$`, thousands commas and decimals; a trailing
# period or comma is not part of it ("costs $1,200." -> 1,200).
_NUMBER = re.compile(r'-?\$?-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)')


def _canonical(token: str) -> str | None:
  """'-$1,200.50' -> '-1200.5'; None if the token is not a number."""
  sign = '-' if token.count('-') % 2 else ''
  digits = token.replace('-', '').replace('$', '').replace(',', '')
  try:
    value = decimal.Decimal(sign + digits)
  except decimal.InvalidOperation:
    return None
  if not value.is_finite():
    return None
  text = format(value.normalize(), 'f')
  return '0' if text in ('-0', '0') else text


def _first_number(text: str) -> str | None:
  match = _NUMBER.search(text.replace('\u2212', '-'))  # unicode minus
  return _canonical(match.group()) if match else None


def _last_number(text: str) -> str | None:
  matches = _NUMBER.findall(text.replace('\u2212', '-'))
  return _canonical(matches[-1]) if matches else None


def extract_gsm8k_answer(
    text: str, eos: tuple[str, ...] = EOS
) -> str | None:
  """The canonical number a model output or gold solution ends with.

  Text after the first end-of-sequence string is dropped; then the first
  number after the last `####` (up to a newline), or, when there is no
  marker or no number after it, the last number in the text. Commas, `$`
  and a trailing period are tolerated.

  >>> extract_gsm8k_answer('She pays 3*$400 = $1,200.\\n#### $1,200.')
  '1200'

  Args:
    text: model output or gold answer field.
    eos: strings that end the output (end-of-sequence renderings).

  Returns:
    The number as a canonical decimal string ('-3', '2.5'), or None.
  """
  for stop in eos:
    cut = text.find(stop)
    if cut >= 0:
      text = text[:cut]
  start = text.rfind(_arithmetic.ANSWER_MARKER)
  if start >= 0:
    tail = text[start + len(_arithmetic.ANSWER_MARKER):].split('\n')[0]
    number = _first_number(tail)
    if number is not None:
      return number
  return _last_number(text)


def gsm8k_is_correct(text: str, answer: str) -> bool:
  """Verifier: the extracted number equals `answer` numerically (exactly).

  `answer` is the gold number (e.g. the builder's `answer` feature); both
  sides go through the same lenient parsing, so '1,000' equals '1000.00'.
  """
  got = extract_gsm8k_answer(text)
  want = _first_number(str(answer))
  return got is not None and want is not None and (
      decimal.Decimal(got) == decimal.Decimal(want))


def strip_calculator(text: str) -> str:
  """Drops calculator annotations: '4/2 = <<4/2=2>>2' -> '4/2 = 2'."""
  return _CALCULATOR.sub('', text)


def parse_gsm8k(record: dict, where: str = 'record') -> dict[str, str]:
  """Splits a raw `{question, answer}` record into question/rationale/answer.

  Args:
    record: one JSON object of a GSM8K file.
    where: location for error messages ('train.jsonl:12').

  Returns:
    `question`, `rationale` (the solution before `####`, calculator
    annotations kept: RFT's dedup key needs them) and `answer` (canonical).
  """
  for field in ('question', 'answer'):
    if not isinstance(record.get(field), str):
      raise ValueError(f'{where}: field {field!r} missing or not a string; '
                       f'fields: {sorted(record)}.')
  solution = record['answer']
  start = solution.rfind(_arithmetic.ANSWER_MARKER)
  number = None
  if start >= 0:
    number = _first_number(solution[start + len(_arithmetic.ANSWER_MARKER):])
  if number is None:
    raise ValueError(f'{where}: answer has no "#### <number>" line: '
                     f'{solution[-60:]!r}.')
  return dict(question=record['question'].strip(),
              rationale=solution[:start].strip(), answer=number)


@dataclasses.dataclass(eq=False)
class Gsm8kConfig(tfds.core.BuilderConfig):
  """`path`: a directory with `train.jsonl` and/or `test.jsonl`."""

  path: str = ''


class Gsm8k(tfds.core.GeneratorBasedBuilder):
  """GSM8K JSONL files as question/rationale/answer text features.

  `index` is the 0-based record number within its split file (the example
  id for per-example state such as TRICE's memory); `line` its 1-based line.
  """

  VERSION = tfds.core.Version('1.0.0')
  # Local files: no checksums to look up next to the source (see _builders).
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='GSM8K grade-school math from local JSONL files.',
        features=tfds.features.FeaturesDict({
            'question': tfds.features.Text(),
            'rationale': tfds.features.Text(),
            'answer': tfds.features.Text(),
            'index': np.int64,
            'line': np.int64,
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    path = self.builder_config.path
    if not os.path.isdir(path):
      raise FileNotFoundError(f'GSM8K directory {path!r} does not exist.')
    files = {s: os.path.join(path, f) for s, f in SPLIT_FILES.items()
             if os.path.isfile(os.path.join(path, f))}
    if not files:
      raise FileNotFoundError(
          f'No {" or ".join(SPLIT_FILES.values())} in {path!r}.')
    return {s: self._generate_examples(f) for s, f in files.items()}

  def _generate_examples(self, file: str):
    index = 0
    with open(file) as f:
      for line_number, line in enumerate(f, start=1):
        if not line.strip():
          continue
        where = f'{file}:{line_number}'
        try:
          record = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f'{where}: invalid JSON ({e}).') from e
        if not isinstance(record, dict):
          raise ValueError(f'{where}: expected a JSON object.')
        yield index, dict(parse_gsm8k(record, where), index=index,
                          line=line_number)
        index += 1
    if not index:
      raise ValueError(f'GSM8K file {file!r} holds no records.')


def gsm8k_config(path: str, name: str | None = None) -> Gsm8kConfig:
  """A config reading `path`; the name defaults to the directory's name."""
  name = name or re.sub(r'\W', '_', os.path.basename(os.path.normpath(path)))
  return Gsm8kConfig(name=name, path=os.path.abspath(path))


def gsm8k_format(rationale: bool = True, calculator: bool = False):
  """Formats `Gsm8k` records like `arithmetic_format`.

  Prompt `'Q: <question>\\nA:'`, response `' <rationale>\\n#### <answer>'`
  (or `' #### <answer>'`), so `extract_gsm8k_answer` and the arithmetic
  `extract_answer` both read it.

  Args:
    rationale: whether the response holds the worked solution.
    calculator: keep the `<<48/2=24>>` annotations in the rationale.
  """

  def format_fn(record):
    text = record['rationale']
    text = text if calculator else strip_calculator(text)
    ex = dict(rationale=text, answer=record['answer'])
    return (_arithmetic.format_prompt(record),
            _arithmetic.format_target(ex, rationale=rationale))

  return format_fn
