"""DigitSum: a task with many correct answers, for pass@k and diversity.

Prompt `S s ?` with s in 2..18; a correct answer is any two-digit number `ab`
(a in 1..9, b in 0..9) with a + b = s: between 1 and 9 valid answers per
prompt, 90 possible answers in all, so pass@k and coverage can be computed
exactly from the model's distribution (shared/specs/experiments.md, task B).

The base corpus is skewed on purpose: for each s, valid answers follow a
Zipf(1.5) law over a fixed random order of the valid set, 30% of rows carry a
uniformly random (usually wrong) answer, and the extreme sums get 10x fewer
rows, so a model fit to it rarely solves them and favours few answers.
"""

import numpy as np

SUMS = tuple(range(2, 19))
ANSWERS = tuple(f'{a}{b}' for a in range(1, 10) for b in range(10))
RARE_SUMS = (2, 17, 18)


def valid_answers(s: int) -> list[str]:
  """The two-digit numbers whose digits sum to `s`."""
  return [y for y in ANSWERS if int(y[0]) + int(y[1]) == s]


def digitsum_prompt(record: dict) -> str:
  return f'S {record["sum"]} ?'


def digitsum_format(record: dict) -> tuple[str, str]:
  """`(prompt, response)` text of a corpus row: `('S 7 ?', ' 25')`."""
  return digitsum_prompt(record), f' {record["answer"]}'


def digitsum_correct(text: str, record: dict) -> bool:
  """Whether `text` (stripped) is a two-digit number with digit sum `s`."""
  y = text.strip()
  return y in ANSWERS and int(y[0]) + int(y[1]) == int(record['sum'])


def digitsum_corpus(num_rows: int, seed: int = 0, *, zipf: float = 1.5,
                    noise: float = 0.3, rare_factor: int = 10) -> list[dict]:
  """The skewed base corpus: `num_rows` records `{'sum', 'answer'}`.

  Args:
    num_rows: rows to draw.
    seed: numpy seed (the valid-set order and the draws).
    zipf: exponent of the law over each sum's valid answers.
    noise: fraction of rows with a uniformly random answer.
    rare_factor: how much rarer the sums in `RARE_SUMS` are.
  """
  rng = np.random.default_rng(seed)
  weight = np.array([1.0 / rare_factor if s in RARE_SUMS else 1.0
                     for s in SUMS])
  orders = {s: list(rng.permutation(valid_answers(s))) for s in SUMS}
  rows = []
  for s in rng.choice(SUMS, size=num_rows, p=weight / weight.sum()):
    s = int(s)
    if rng.random() < noise:
      answer = ANSWERS[rng.integers(len(ANSWERS))]
    else:
      ranks = np.arange(1, len(orders[s]) + 1) ** -zipf
      answer = orders[s][rng.choice(len(ranks), p=ranks / ranks.sum())]
    rows.append({'sum': str(s), 'answer': str(answer)})
  return rows


def digitsum_prompts() -> list[dict]:
  """One record per sum (the held-out set: every prompt, exactly once)."""
  return [{'sum': str(s), 'answer': valid_answers(s)[0]} for s in SUMS]


def exact_pass_at_k(p_correct: np.ndarray, k: int) -> float:
  """`mean_s [1 − (1 − P_s)^k]` from per-prompt success probabilities."""
  return float(np.mean(1 - (1 - np.asarray(p_correct, np.float64)) ** k))


def exact_coverage(probs: np.ndarray, valid: np.ndarray, n: int) -> float:
  """`mean_s Σ_{valid y} [1 − (1 − π(y|s))^n] / #valid(s)`.

  Args:
    probs: [S, A] answer probabilities π(y|s).
    valid: [S, A] bool, which answers are correct for each prompt.
    n: number of samples.
  """
  hit = 1 - (1 - np.asarray(probs, np.float64)) ** n
  return float(np.mean((hit * valid).sum(-1) / valid.sum(-1)))
