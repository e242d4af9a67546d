"""TRICE through the recipe, the rejection-sampling stage, the E1 corpus."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.phases import rejection as rejection_phase
from postrain import data
from postrain import models
from postrain import recipes

M = 4


def _setup():
  """A tiny model, M prompts, a memory of 6 rows and one proposal each."""
  tok = data.CharTokenizer()
  cfg = models.TransformerConfig.preset('tiny').replace(
      vocab_size=tok.vocab_size, num_layers=1)
  graphdef, params = models.random_state(cfg, seed=3, weight_scale=2.0)
  prompts = [f'Q: {i}+{i}\nA:' for i in range(M)]
  out = recipes.rollout(graphdef, params, tok, prompts, [{}] * M,
                        jax.random.key(1), group_size=1, max_prompt_len=16,
                        max_new_tokens=6)
  rng = np.random.default_rng(0)
  memory = recipes.memory.init_memory(
      6, 6, tokens=rng.integers(4, 30, (6, 6)),
      length=rng.integers(2, 7, 6), correct=[1, 0, 1, 0, 1, 1])
  return tok, graphdef, params, out, memory


def test_accept_if_correct_then_candidate_rows():
  tok, _, _, out, memory = _setup()
  idx = jnp.array([5, 1, 2, 3])
  accepted = np.array([True, True, False, False])
  new, rows = recipes.memory.update(memory, idx, out.completions,
                                    out.completion_lengths, accepted)
  old_tok, new_tok = np.asarray(memory.tokens), np.asarray(new.tokens)
  for m, (i, a) in enumerate(zip(np.asarray(idx), accepted)):
    want = out.completions[m] if a else old_tok[i]
    np.testing.assert_array_equal(new_tok[i], want)
  np.testing.assert_array_equal(new_tok[[0, 4]], old_tok[[0, 4]])
  np.testing.assert_array_equal(rows.correct, [True, True, True, False])
  np.testing.assert_array_equal(new.hinted[np.asarray(idx)],
                                [False, False, True, True])
  batch = recipes.trice.candidate_rows(
      out.prompts, out.prompt_lengths, np.asarray(rows.tokens),
      np.asarray(rows.length), out, pad_id=tok.pad_id)
  assert batch['inputs'].shape[0] == 2 * M
  for r in range(2 * M):  # prompt then z' (rows < M) or z̃ (rows ≥ M)
    m = r % M
    comp, n = ((np.asarray(rows.tokens)[m], int(rows.length[m])) if r < M
               else (out.completions[m], int(out.completion_lengths[m])))
    p = int(out.prompt_lengths[m])
    seq = np.concatenate([batch['inputs'][r][:1], batch['targets'][r]])
    np.testing.assert_array_equal(seq[:p], out.prompts[m][:p])
    np.testing.assert_array_equal(seq[p:p + n], comp[:n])
    assert batch['loss_mask'][r].sum() == n
    assert batch['loss_mask'][r][p - 1:p - 1 + n].all()


def _batch(out, tok, correct, mask):
  rng = np.random.default_rng(1)
  mem = rng.integers(4, 30, out.completions.shape)
  rows = recipes.trice.candidate_rows(
      out.prompts, out.prompt_lengths, mem, np.full(M, 5), out,
      pad_id=tok.pad_id)
  rows.update(proposal_correct=np.asarray(correct, np.float32),
              mask=np.asarray(mask, np.float32))
  return jax.tree.map(jnp.asarray, rows)


def _seq_logp(graphdef, params, batch):
  logp = recipes.rl.forward(graphdef, params, batch)['logp']
  return (logp * batch['loss_mask']).sum(-1)


def _reference_coef(correct, mask, cv):
  """Spec §1.5 in float64: ĝ = (1/|V|) Σ_V [∇logπ(z') − β ∇logπ(z̃)]."""
  c, v = np.asarray(correct, float), np.asarray(mask, float)
  n = v.sum()
  beta = v * (c.sum() - c) / (n - 1 + 1e-10) if cv else 0 * c
  return np.concatenate([v * (1 - beta * c), -v * beta * (1 - c)]) / max(n, 1)


@pytest.mark.parametrize('cv', [True, False])
def test_objective_gradient_is_the_trice_estimator(cv):
  tok, graphdef, params, out, _ = _setup()
  correct, mask = [1, 0, 1, 0], [1, 1, 1, 0]
  batch = _batch(out, tok, correct, mask)
  objective = recipes.trice.make_objective(graphdef, control_variate=cv)
  grad = jax.grad(lambda p: objective(p, batch, None)[0])(params)
  coef = jnp.asarray(_reference_coef(correct, mask, cv), jnp.float32)
  want = jax.grad(lambda p: -(coef * _seq_logp(graphdef, p, batch)).sum())(
      params)
  for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
  _, metrics = objective(params, batch, None)
  assert metrics['n_valid'] == 3


def test_subsampled_objective_is_unbiased_for_the_full_one():
  tok, graphdef, params, out, _ = _setup()
  batch = _batch(out, tok, [1, 0, 1, 1], [1, 1, 1, 1])
  full = recipes.trice.make_objective(graphdef)
  sub = recipes.trice.make_objective(graphdef, num_samples=4)
  flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)])
  want = flat(jax.grad(lambda p: full(p, batch, None)[0])(params))
  grads = jax.jit(jax.vmap(lambda k: flat(jax.grad(
      lambda p: sub(p, batch, k)[0])(params))))(
          jax.random.split(jax.random.key(0), 200))
  mean, se = grads.mean(0), grads.std(0) / np.sqrt(200)
  assert np.all(np.abs(mean - want) <= 5 * se + 1e-6)
  assert not np.allclose(grads[0], want)  # a single draw is noisy


def test_gradient_variance_matches_per_group_gradients():
  tok, graphdef, params, out, _ = _setup()
  correct, mask = [1, 0, 1, 0], [1, 1, 1, 0]  # c̃ = 1 implies mask = 1
  batch = _batch(out, tok, correct, mask)
  got = recipes.trice.make_gradient_variance(graphdef, num_groups=2)(
      params, batch)
  for name, cv in (('cv', True), ('basic', False)):
    n = np.asarray(mask, float).reshape(2, 2).sum(-1)
    coef = _reference_coef(correct, mask, cv) * max(sum(mask), 1)
    grads = []
    for k in range(2):  # group k: examples 2k, 2k+1 and their proposals
      keep = np.zeros(2 * M)
      keep[[2 * k, 2 * k + 1, M + 2 * k, M + 2 * k + 1]] = 1
      ck = jnp.asarray(coef * keep / max(n[k], 1), jnp.float32)
      g = jax.grad(lambda p, ck=ck: (ck * _seq_logp(graphdef, p, batch)
                                     ).sum())(params)
      grads.append(np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]))
    want = np.var(np.stack(grads).astype(np.float64), axis=0, ddof=1).sum()
    np.testing.assert_allclose(got[name], want, rtol=1e-3)
  assert got['ratio'] == pytest.approx(got['cv'] / got['basic'], rel=1e-5)


def test_majority_vote():
  assert recipes.trice.majority_vote(['3', None, '4', '4']) == '4'
  assert recipes.trice.majority_vote(['3', '4']) == '3'
  assert recipes.trice.majority_vote([None, None]) is None


# --- the sample → keep stage (spec §3, §5, §9) ------------------------------


def test_equation_keys_and_validity():
  rej = recipes.rejection
  assert rej.equation_key(' 3+4=7\n7*2=14\n#### 14') == '3+4=7|7*2=14'
  assert rej.equation_key('She has <<4 / 2=2>>2 and <<2*3=6>>6') == (
      '4/2=2|2*3=6')
  assert rej.equations_valid(' 3+4=7\n7*2=14')
  assert not rej.equations_valid(' 3+4=8\n8*2=16')
  assert not rej.equations_valid('<<2**99999=1>>')  # no powers evaluated


def test_dedup_keeps_one_path_per_key_and_the_farthest():
  rej = recipes.rejection
  paths = [' 2*1=2\n#### 2', ' 1+1=2\n#### 2', ' 1+1=2\n####  2',
           ' 1+1=2\nso the answer is clearly\n#### 2']
  # 1, 2, 3 share the key '1+1=2'; each replaces the stored one because it
  # is farther (Levenshtein) from path 0, the other kept path.
  assert rej.dedup_equation_lists(paths) == [0, 3]
  assert rej.dedup_equation_lists(paths[:3]) == [0, 2]
  assert rej.keep(paths + [' 1+1=3\n#### 3'], [1, 1, 1, 1, 1],
                  policy='keep_correct', dedup='equation_list') == [0, 3]
  assert rej.keep(paths, [1, 0, 1, 1], policy='keep_correct', cap=2) == [0, 2]


def test_best_of_k_first_on_ties():
  rej = recipes.rejection
  np.testing.assert_array_equal(
      rej.best_of_k(np.array([[0, 1, 1], [0, 0, 0], [.2, .1, .9]])),
      [1, 0, 2])
  assert rej.keep(['a', 'b', 'c'], [0, 0, 0], policy='best_of_k') == [0]
  with pytest.raises(ValueError, match='keep_correct'):
    rej.keep(['a'], [1], policy='nope')


def test_iteration_steps_sum_and_grow():
  steps = rejection_phase.iteration_steps(215, 1.2, 4)
  assert sum(steps) == 215 and steps == sorted(steps)
  assert steps[:3] == [40, 48, 57]  # STaR: 40 steps, +20% per iteration
  with pytest.raises(ValueError, match='iterations'):
    rejection_phase.iteration_steps(2, 1.0, 3)


# --- the E1 corpus --------------------------------------------------------


def test_noisy_rationale_slips_once_and_stays_consistent():
  task = data.ArithmeticTask(min_steps=3, max_steps=4)
  slipped = 0
  for i in range(200):
    ex = task.example(i)
    text, value = data.noisy_rationale(ex, 0.3)
    if text == ex['rationale']:
      assert value == ex['answer']
      continue
    slipped += 1
    wrong = [l for l in text.split('\n')
             if not recipes.rejection.equations_valid(l)]
    assert len(wrong) == 1  # one slip; later lines compute correctly
    assert text.split('\n')[-1].endswith(f'={value}')
    assert data.noisy_rationale(ex, 0.3) == (text, value)  # deterministic
  assert 40 <= slipped <= 80  # ~30% of 200
  assert data.noisy_rationale(task.example(0), 0.0)[0] == (
      task.example(0)['rationale'])


def test_hinted_prompts_carry_the_answer_and_clean_targets():
  task = data.ArithmeticTask(min_steps=3, max_steps=4)
  fmt = data.arithmetic_format(noise=1.0, hint_rate=0.5)
  hinted = 0
  for i in range(100):
    ex = task.example(i)
    prompt, target = fmt(ex)
    if data.hinted_prompt(ex) == prompt:
      hinted += 1
      assert f' H {ex["answer"]}\n' in prompt
      assert target == data.format_target(ex)  # clean under a hint
    else:
      assert prompt == data.format_prompt(ex) and target != (
          data.format_target(ex))  # noise=1: every plain target slips
  assert 30 <= hinted <= 70
  assert data.arithmetic_format()(task.example(0)) == (
      data.format_prompt(task.example(0)),
      data.format_target(task.example(0)))
