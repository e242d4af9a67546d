"""Format functions: a source record -> (prompt_text, response_text).

A format function may raise `KeyError` or `ValueError`; the loader adds the
record index and source name to the message.
"""

import json
from typing import Any, Callable

from postrain.data import _arithmetic

FormatFn = Callable[[dict[str, Any]], tuple[str, str]]


def arithmetic_format(rationale: bool = True, *, noise: float = 0.0,
                      hint_rate: float = 0.0) -> FormatFn:
  """Formats `SyntheticArithmetic` records with `format_prompt/_target`.

  Args:
    rationale: whether the response holds the step lines before the answer.
    noise: share of rationales with one arithmetic slip (`noisy_rationale`;
      the target then ends in the slipped value): a noisy-rationale corpus.
    hint_rate: share of records shown with the answer as a hint
      (`hinted_prompt`) and a clean rationale, so that the model learns to
      rationalise (STaR, TRICE's hinted initialisation). Both choices are
      fixed per question.
  """

  def format_fn(record):
    if hint_rate and _arithmetic._unit(record['question'], 'hint') < hint_rate:  # pylint: disable=protected-access
      return (_arithmetic.hinted_prompt(record),
              _arithmetic.format_target(record, rationale=rationale))
    if noise and rationale:
      steps, value = _arithmetic.noisy_rationale(record, noise)
      record = dict(record, rationale=steps, answer=value)
    return (
        _arithmetic.format_prompt(record),
        _arithmetic.format_target(record, rationale=rationale),
    )

  return format_fn


def json_fields(record: dict[str, Any]) -> dict[str, Any]:
  """Returns the JSON object of a `JsonlText` record (or the record itself)."""
  if 'json' in record and isinstance(record['json'], str):
    return json.loads(record['json'])
  return record


def jsonl_format(
    prompt_field: str,
    response_field: str,
    *,
    prompt_template: str = '{}',
    response_template: str = '{}',
) -> FormatFn:
  """Selects two fields of a `JsonlText` record.

  Args:
    prompt_field: JSON field with the prompt.
    response_field: JSON field with the response.
    prompt_template: `str.format` template applied to the prompt, e.g.
      `'Q: {}\\nA:'`.
    response_template: template applied to the response, e.g. `' {}'`.

  Returns:
    A format function; a missing field raises a `KeyError` that names the
    field and the available fields.
  """

  def get(fields, name):
    if name not in fields:
      raise KeyError(
          f'field {name!r} is missing; available fields: {sorted(fields)}'
      )
    return str(fields[name])

  def format_fn(record):
    fields = json_fields(record)
    return (
        prompt_template.format(get(fields, prompt_field)),
        response_template.format(get(fields, response_field)),
    )

  return format_fn
