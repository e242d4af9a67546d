"""The sample → verify → keep stage of STaR, RFT, ReST-EM and RAFT.

Spec `rationale.md` §2–5 and §9. Host-side and pure: given the sampled
paths of each question and their rewards, decide which are kept for the
next fine-tuning round.

- STaR (Zelikman et al., *STaR: Bootstrapping Reasoning With Reasoning*,
  arXiv:2203.14465): keep correct samples; rationalise failures with the
  answer as a hint (the phase samples those).
- RFT (Yuan et al., *Scaling Relationship on Learning Mathematical Reasoning
  with Large Language Models*, arXiv:2308.01825): keep correct paths whose
  equations are all valid, one per distinct equation list
  (`dedup_equation_lists`).
- ReST-EM (Singh et al., *Beyond Human Data*, arXiv:2312.06585): keep
  correct, at most `cap` per problem.
- RAFT (Dong et al., *RAFT: Reward rAnked FineTuning*, arXiv:2304.06767):
  the highest-reward sample per prompt (`best_of_k`).
"""

from collections.abc import Sequence
import re

import numpy as np
from rapidfuzz.distance import Levenshtein

# GSM8K calculator annotations `<<48/2=24>>`; otherwise lines `lhs=rhs`
# (the synthetic arithmetic rationales).
_ANNOTATION = re.compile(r'<<([^<>]*)>>')
_LINE_EQUATION = re.compile(r'^\s*([-\d.+*/() ]+)=\s*(-?[\d.]+)\s*$')
_SAFE_EXPR = re.compile(r'^[-\d.+*/() ]+$')


def equations(text: str) -> list[tuple[str, str]]:
  """`(lhs, rhs)` of a path's equations, in order, spaces removed.

  Calculator annotations `<<lhs=rhs>>` when the path has any, else every
  line of the form `expression=number`.
  """
  found = _ANNOTATION.findall(text)
  if found:
    pairs = [a.rsplit('=', 1) for a in found if '=' in a]
  else:
    pairs = [m.groups() for m in map(_LINE_EQUATION.match, text.split('\n'))
             if m]
  return [(l.replace(' ', ''), r.replace(' ', '')) for l, r in pairs]


def equations_valid(text: str, tol: float = 1e-3) -> bool:
  """Every equation holds: `|eval(lhs) − rhs| < tol` (RFT's filter)."""
  for lhs, rhs in equations(text):
    if not _SAFE_EXPR.match(lhs) or '**' in lhs:  # why: no huge powers
      return False
    try:
      value = eval(lhs, {'__builtins__': {}})  # pylint: disable=eval-used
      if abs(float(value) - float(rhs)) >= tol:
        return False
    except (SyntaxError, ZeroDivisionError, ValueError, TypeError,
            OverflowError):
      return False
  return True


def equation_key(text: str) -> str:
  """RFT's dedup key: the equations joined by `|` (spaces removed)."""
  return '|'.join(f'{l}={r}' for l, r in equations(text))


def dedup_equation_lists(paths: Sequence[str]) -> list[int]:
  """Indices of the paths RFT keeps: one per distinct equation list.

  A path with a new key is kept; on a collision the new path replaces the
  stored one iff its summed Levenshtein distance to the other kept paths is
  larger (keeps textually diverse paths). Deterministic in the order given.

  >>> dedup_equation_lists(['1+1=2', ' 1+1=2', '2*2=4'])
  [0, 2]
  """
  kept: dict[str, int] = {}

  def spread(i, others):
    return sum(Levenshtein.distance(paths[i], paths[j]) for j in others)

  for i, path in enumerate(paths):
    key = equation_key(path)
    if key not in kept:
      kept[key] = i
      continue
    others = [j for k, j in kept.items() if k != key]
    if spread(i, others) > spread(kept[key], others):
      kept[key] = i
  return sorted(kept.values())


def best_of_k(rewards: np.ndarray) -> np.ndarray:
  """RAFT: the index of the highest reward per prompt; ties go to the first.

  Args:
    rewards: [B, K] rewards of K samples of each of B prompts.

  Returns:
    int [B].
  """
  return np.argmax(np.asarray(rewards), axis=-1)


def keep(texts: Sequence[str], correct: Sequence[bool], *, policy: str,
         cap: int = 0, dedup: str = 'none', rewards=None) -> list[int]:
  """The kept sample indices of ONE question's K samples.

  Args:
    texts: the K sampled paths.
    correct: [K] verifier bits.
    policy: `keep_correct` (STaR, RFT, ReST-EM) or `best_of_k` (RAFT; by
      `rewards`, default the bits).
    cap: keep at most this many (0: no cap), the first ones after dedup.
    dedup: `none`, `exact` (distinct strings) or `equation_list` (RFT, with
      invalid-equation paths dropped first).
    rewards: [K] rewards for `best_of_k`.
  """
  if policy == 'keep_correct':
    idx = [i for i, c in enumerate(correct) if c]
  elif policy == 'best_of_k':
    r = np.asarray(correct if rewards is None else rewards, np.float64)
    idx = [int(best_of_k(r[None])[0])]
  else:
    raise ValueError(f'keep policy {policy!r}; valid: keep_correct, '
                     'best_of_k.')
  if dedup == 'equation_list':
    idx = [i for i in idx if equations_valid(texts[i])]
    idx = [idx[j] for j in dedup_equation_lists([texts[i] for i in idx])]
  elif dedup == 'exact':
    first = {}
    for i in idx:
      first.setdefault(texts[i], i)
    idx = sorted(first.values())
  elif dedup != 'none':
    raise ValueError(f'dedup {dedup!r}; valid: none, exact, equation_list.')
  return idx[:cap] if cap else idx
