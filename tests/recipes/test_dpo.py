"""DPO and reward-model objectives against direct float64 computations."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain import data
from postrain import losses
from postrain import models
from postrain import recipes

TRIPLES = [('>', 'abcd', 'hh'), ('x:', 'd', 'hgfedcba'), ('>', 'dddd', 'ab'),
           ('q', 'hello', 'h')]


def _setup(triples=TRIPLES):
  tok = data.CharTokenizer()
  cfg = models.TransformerConfig.preset('tiny').replace(
      vocab_size=tok.vocab_size, num_layers=1)
  graphdef, params = models.random_state(cfg, seed=4, weight_scale=2.0)
  batch = data.tokenize_pairs(tok, triples, max_len=16)
  return graphdef, params, jax.tree.map(jnp.asarray, batch)


def _row_logps(graphdef, params, rows):
  """Sequence log-probs [N] of rows [N, T] from full logits, float64."""
  model = nnx.merge(graphdef, params)
  logits = np.asarray(model(rows['inputs'], rows['positions'],
                            segment_ids=rows['segment_ids'])[0], np.float64)
  top = logits.max(-1, keepdims=True)
  logz = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
  tgt = np.take_along_axis(logits, np.asarray(rows['targets'])[..., None],
                           -1)[..., 0]
  return ((tgt - logz) * np.asarray(rows['loss_mask'])).sum(-1)


def _side(batch, i):
  return {k: v[:, i] for k, v in batch.items()}


def _log_sigmoid(x):
  return -np.logaddexp(0.0, -x)


def test_pair_rows_hold_prompt_and_response_masks():
  batch = data.tokenize_pairs(data.CharTokenizer(), TRIPLES, max_len=16)
  assert batch['inputs'].shape == (4, 2, 16)
  # loss on response + eos: 'abcd' -> 5 tokens, 'hh' -> 3.
  np.testing.assert_array_equal(batch['loss_mask'].sum(-1)[0], [5, 3])
  with pytest.raises(ValueError, match='max_len'):
    data.tokenize_pairs(data.CharTokenizer(), [('>', 'a' * 20, 'b')],
                        max_len=16)


def test_one_forward_equals_two_separate_forwards():
  graphdef, params, batch = _setup()
  seq = recipes.dpo.sequence_logps(graphdef, params, batch)
  for i in (0, 1):
    alone = recipes.rl.forward(graphdef, params, _side(batch, i))
    mask = batch['loss_mask'][:, i]
    np.testing.assert_allclose(seq['logp'][:, i],
                               jnp.sum(alone['logp'] * mask, -1), rtol=1e-6)
    np.testing.assert_allclose(seq['logp'][:, i],
                               _row_logps(graphdef, params, _side(batch, i)),
                               rtol=1e-4)
  np.testing.assert_array_equal(seq['length'], batch['loss_mask'].sum(-1))


@pytest.mark.parametrize('loss_type,beta,kwargs', [
    ('sigmoid', 0.1, {}), ('cdpo', 0.5, {'epsilon': 0.2}),
    ('ipo', 0.5, {}), ('simpo', 2.0, {'gamma': 0.5}),
    ('rpo', 0.1, {'alpha': 0.5})])
def test_objective_equals_float64_from_full_logits(loss_type, beta, kwargs):
  graphdef, params, batch = _setup()
  ref = np.array([[-9., -7.], [-3., -20.], [-10., -5.], [-12., -4.]])
  if loss_type != 'simpo':
    batch['ref_logp'] = jnp.asarray(ref, jnp.float32)
  objective = recipes.dpo.make_objective(graphdef, loss_type=loss_type,
                                         beta=beta, loss_kwargs=kwargs)
  loss, metrics = objective(params, batch, None)
  lw, ll = (_row_logps(graphdef, params, _side(batch, i)) for i in (0, 1))
  nw, nl = np.asarray(batch['loss_mask']).sum(-1).T
  d = (lw - ref[:, 0]) - (ll - ref[:, 1])
  expected = {
      'sigmoid': lambda: -_log_sigmoid(beta * d),
      'cdpo': lambda: (-0.8 * _log_sigmoid(beta * d)
                       - 0.2 * _log_sigmoid(-beta * d)),
      'ipo': lambda: (d - 0.5 / beta) ** 2,
      'simpo': lambda: -_log_sigmoid(beta * (lw / nw - ll / nl) - 0.5),
      'rpo': lambda: -_log_sigmoid(beta * d) - 0.5 * lw / nw,
  }[loss_type]()
  np.testing.assert_allclose(loss, expected.mean(), rtol=1e-4)
  if loss_type != 'simpo':
    np.testing.assert_allclose(metrics['rewards/margin'], beta * d.mean(),
                               rtol=1e-4)
  np.testing.assert_allclose(metrics['ranking_accuracy'], np.mean(lw > ll))
  np.testing.assert_allclose(metrics['logps/chosen'], lw.mean(), rtol=1e-5)


def test_kto_splits_pairs_into_unpaired_rows():
  triples = [t + (TRIPLES[(i + 1) % 4][1],) for i, t in enumerate(TRIPLES)]
  graphdef, params, batch = _setup(triples)
  ref = jnp.asarray(np.random.default_rng(0).normal(-8, 2, (4, 3)),
                    jnp.float32)
  batch['ref_logp'] = ref
  loss, _ = recipes.dpo.make_objective(graphdef, loss_type='kto')(
      params, batch, None)
  lp = np.stack([_row_logps(graphdef, params, _side(batch, i))
                 for i in range(3)], 1)
  h = lp - np.asarray(ref, np.float64)
  z0 = max(0.0, h[:, 2].mean())
  sig = lambda x: 1 / (1 + np.exp(-x))
  expected = np.concatenate([sig(-0.1 * (h[:, 0] - z0)),
                             sig(0.1 * (h[:, 1] - z0))]).mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_missing_reference_and_bad_kwargs_fail_clearly():
  graphdef, params, batch = _setup()
  with pytest.raises(KeyError, match='ref_w'):
    recipes.dpo.make_objective(graphdef)(params, batch, None)
  with pytest.raises(ValueError, match='epsilon'):
    recipes.dpo.make_objective(graphdef, loss_type='cdpo',
                               loss_kwargs={'eps': 0.1})
  with pytest.raises(ValueError, match='d2o'):
    recipes.dpo.make_objective(graphdef, loss_type='d2o')


def test_precomputed_reference_equals_live():
  """Reference log-probs stored from a pass equal those of a live forward."""
  graphdef, params, batch = _setup()
  ref_params = jax.tree.map(lambda x: x * 0.9, params)
  fn = jax.jit(recipes.dpo.make_sequence_logps(graphdef))
  stored = np.concatenate([np.asarray(fn(ref_params, jax.tree.map(
      lambda x: x[i:i + 2], batch))) for i in (0, 2)])  # a pass in 2 batches
  live = fn(ref_params, batch)
  np.testing.assert_allclose(stored, live, rtol=1e-6)
  objective = recipes.dpo.make_objective(graphdef)
  a = objective(params, dict(batch, ref_logp=jnp.asarray(stored)), None)[0]
  b = objective(params, dict(batch, ref_logp=live), None)[0]
  np.testing.assert_allclose(a, b, rtol=1e-6)
  # At the reference itself every pair's loss is log 2.
  at_ref = objective(ref_params, dict(batch, ref_logp=live), None)[0]
  np.testing.assert_allclose(at_ref, np.log(2.0), rtol=1e-5)


def test_best_vs_worst_is_exact_with_ties_dropped():
  r = np.array([[0., 3., 3., -1.],   # best: first of the tied 3s; worst: 3
                [2., 2., 2., 2.],    # all tie: dropped
                [1., 0., 0., 5.],    # worst: first of the tied 0s
                [1., 1.2, 1., 1.]])  # gap 0.2 < min_gap 0.5: dropped
  best, worst, keep = recipes.dpo.best_vs_worst(r, min_gap=0.5)
  np.testing.assert_array_equal(best, [1, 0, 3, 1])
  np.testing.assert_array_equal(worst, [3, 0, 1, 0])
  np.testing.assert_array_equal(keep, [True, False, True, False])
  # The rows it stacks are those samples, with their sampler log-probs.
  rows = {k: np.arange(16 * 3).reshape(16, 3) + 100 * i for i, k in
          enumerate(('inputs', 'targets', 'positions', 'segment_ids',
                     'loss_mask', 'behaviour_logp'))}
  pairs = recipes.dpo.pair_rows(rows, best, worst, keep, k=4)
  np.testing.assert_array_equal(pairs['inputs'][:, :, 0],
                                [[1 * 3, 3 * 3], [11 * 3, 9 * 3]])
  np.testing.assert_array_equal(
      pairs['prev_logp'], rows['behaviour_logp'][[[1, 3], [11, 9]]].sum(-1))


def _rm_setup():
  graphdef, params, batch = _setup()
  head = {'kernel': jnp.asarray(np.random.default_rng(1).normal(
      size=params['embedding'].shape[1]), jnp.float32),
          'bias': jnp.asarray(0.3)}
  return graphdef, {'lm': params, 'head': head}, batch


def test_reward_reads_the_last_response_token():
  graphdef, params, batch = _rm_setup()
  r = recipes.reward_model.pair_rewards(graphdef, params, batch)
  model = nnx.merge(graphdef, params['lm'])
  for i in range(2):
    rows = _side(batch, i)
    hidden = np.asarray(model.features(rows['inputs'], rows['positions'])[0])
    last = np.asarray(rows['loss_mask']).sum(-1).astype(int) + np.asarray(
        rows['loss_mask']).argmax(-1) - 1
    h = hidden[np.arange(4), last]
    # The last counted target is eos: its input is the last response char.
    tok = data.CharTokenizer()
    assert [tok.decode([int(rows['inputs'][b, last[b]])]) for b in
            range(4)] == [t[1 + i][-1] for t in TRIPLES]
    np.testing.assert_allclose(
        r[:, i], h @ np.asarray(params['head']['kernel']) + 0.3, rtol=1e-4)


def test_bradley_terry_objective_margin_smoothing_and_flip():
  graphdef, params, batch = _rm_setup()
  r = np.asarray(recipes.reward_model.pair_rewards(graphdef, params, batch),
                 np.float64)
  d = r[:, 0] - r[:, 1]
  objective = recipes.reward_model.make_objective(
      graphdef, margin=0.5, label_smoothing=0.1, magnitude=2.0)
  loss, metrics = objective(params, batch, None)
  z = d - 0.5
  expected = 2 * (-0.9 * _log_sigmoid(z) - 0.1 * _log_sigmoid(-z))
  np.testing.assert_allclose(loss, expected.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics['accuracy'], np.mean(d > 0))
  flip = np.array([1, 0, 1, 0])
  loss_f, _ = recipes.reward_model.make_objective(graphdef)(
      params, dict(batch, flip=jnp.asarray(flip)), None)
  d_f = np.where(flip, -d, d)
  np.testing.assert_allclose(loss_f, -_log_sigmoid(d_f).mean(), rtol=1e-5)


def test_reward_fn_scores_text_for_rl_and_online_dpo():
  graphdef, params, _ = _rm_setup()
  fn = recipes.reward_model.RewardFn(graphdef, params, data.CharTokenizer(),
                                     max_len=16, batch_size=2)
  texts = [t[1] for t in TRIPLES]
  records = [{'prompt': t[0]} for t in TRIPLES]
  batch = data.tokenize_pairs(data.CharTokenizer(), TRIPLES, max_len=16)
  expected = recipes.reward_model.pair_rewards(graphdef, params, batch)[:, 0]
  np.testing.assert_allclose(fn.batch([t[0] for t in TRIPLES], texts),
                             expected, rtol=1e-5)
  # The `fn(text, record)` signature of score_completions / the RL phase.
  total, parts, errors = recipes.score_completions(texts, records,
                                                   {'rm': (fn, 2.0)})
  assert errors == 0
  np.testing.assert_allclose(total, 2 * np.asarray(expected), rtol=1e-5)
  assert losses.reward_accuracy(total[:1], total[1:2]).shape == (1,)
