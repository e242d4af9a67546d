"""DigitSum: answer sets, the skewed corpus, exact pass@k and coverage."""

import itertools

from flax import nnx
import numpy as np
import pytest

from postrain import data
from postrain import models
from postrain import recipes


def test_valid_answers_are_the_two_digit_numbers_with_that_digit_sum():
  counts = {s: len(data.valid_answers(s)) for s in range(2, 19)}
  assert counts[2] == 2 and counts[10] == 9 and counts[18] == 1
  assert sum(counts.values()) == 90 - 1  # only 10 has digit sum 1
  assert data.valid_answers(3) == ['12', '21', '30']
  r = {'sum': '7'}
  assert data.digitsum_correct(' 25 ', r) and not data.digitsum_correct(
      '52x', r) and not data.digitsum_correct('07', r)


def test_corpus_is_skewed_as_specified():
  rows = data.digitsum_corpus(40000, seed=0)
  sums = np.array([int(r['sum']) for r in rows])
  ok = np.array([data.digitsum_correct(r['answer'], r) for r in rows])
  # 30% noise rows; a random answer is right with prob. #valid/90.
  p_lucky = np.mean([len(data.valid_answers(s)) / 90 for s in sums])
  assert abs((1 - ok.mean()) - 0.3 * (1 - p_lucky)) < 0.01
  rare = np.isin(sums, data.RARE_DIGIT_SUMS).mean()
  assert abs(rare - 3 / (14 * 10 + 3)) < 0.005
  # Zipf(1.5): on s = 10 the top answer of the fixed order takes
  # 1 / H_9(1.5) of the clean rows.
  s10 = [r['answer'] for r, good in zip(rows, ok) if r['sum'] == '10'
         and good]
  top = max(set(s10), key=s10.count)
  h = sum(k ** -1.5 for k in range(1, 10))
  assert abs(s10.count(top) / len(s10) - 1 / h) < 0.03


def test_exact_pass_at_k_and_coverage_match_enumeration():
  probs = np.array([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])
  valid = np.array([[True, True, False], [False, False, True]])
  p = (probs * valid).sum(-1)
  for k in (1, 2, 3):
    # Enumerate all k-tuples of draws from each row's distribution.
    exact = np.mean([sum(np.prod(probs[s][list(t)])
                         for t in itertools.product(range(3), repeat=k)
                         if any(valid[s][list(t)])) for s in range(2)])
    assert data.exact_pass_at_k(p, k) == pytest.approx(exact, abs=1e-12)
  cov = np.mean([(1 - (1 - .5) ** 4 + 1 - (1 - .2) ** 4) / 2,
                 1 - (1 - .8) ** 4])
  assert data.exact_coverage(probs, valid, 4) == pytest.approx(cov)


def test_answer_logprobs_equal_full_logits_and_are_a_subdistribution():
  tok = data.CharTokenizer()
  cfg = models.TransformerConfig.preset('tiny').replace(
      vocab_size=tok.vocab_size, num_layers=1)
  graphdef, params = models.random_state(cfg, seed=2, weight_scale=2.0)
  prompts = ['S 7 ?', 'S 12 ?']
  answers = [f' {y}' for y in data.DIGITSUM_ANSWERS]
  logp = recipes.answer_logprobs(graphdef, params, tok, prompts, answers,
                                 max_prompt_len=8, rows_per_call=64)
  assert logp.shape == (2, 90)
  assert np.exp(logp).sum(-1).max() <= 1 + 1e-6
  # Direct: [bos] prompt answer eos, full-vocabulary log-softmax in float64.
  model = nnx.merge(graphdef, params)
  ids = [tok.bos_id] + tok.encode('S 12 ?') + tok.encode(' 47') + [
      tok.eos_id]
  x = np.array([ids[:-1]])
  logits = np.asarray(model(x, np.arange(x.shape[1])[None],
                            segment_ids=np.ones_like(x))[0], np.float64)[0]
  lsm = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
      -1, keepdims=True)) - logits.max(-1, keepdims=True)
  start = 1 + len(tok.encode('S 12 ?')) - 1
  direct = sum(lsm[t, ids[t + 1]] for t in range(start, len(ids) - 1))
  assert logp[1, data.DIGITSUM_ANSWERS.index('47')] == pytest.approx(
      direct, abs=1e-4)
