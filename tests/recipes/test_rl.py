"""The RL objective and prepare step against direct float64 computations."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from postrain import data
from postrain import models
from postrain import recipes


def _setup(group_size=2):
  tok = data.CharTokenizer()
  cfg = models.TransformerConfig.preset('tiny').replace(
      vocab_size=tok.vocab_size, num_layers=1)
  graphdef, params = models.random_state(cfg, seed=3, weight_scale=2.0)
  out = recipes.rollout(graphdef, params, tok, ['Q: 1+2\nA:', 'Q: 9\nA:'],
                        [{}, {}], jax.random.key(1), group_size=group_size,
                        max_prompt_len=16, max_new_tokens=5)
  batch = recipes.assemble(out, pad_id=tok.pad_id)
  batch['rewards'] = np.array([1., 0., 0., 1.], np.float32)[:len(out.texts)]
  batch['correct'] = batch['rewards']
  return graphdef, params, jax.tree.map(jnp.asarray, batch)


def _ref_logp(graphdef, params, batch):
  """Token log-probs from full logits, in float64 numpy."""
  model = nnx.merge(graphdef, params)
  logits = np.asarray(model(batch['inputs'], batch['positions'],
                            segment_ids=batch['segment_ids'])[0],
                      np.float64)
  logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + \
      logits.max(-1)
  tgt = np.take_along_axis(logits, np.asarray(batch['targets'])[..., None],
                           -1)[..., 0]
  return tgt - logz


def test_pg_objective_is_the_masked_reinforce_loss():
  graphdef, params, batch = _setup()
  prepare = recipes.rl.make_prepare(graphdef, advantage='rloo', group_size=2)
  batch = prepare(params, None, batch)
  np.testing.assert_allclose(batch['advantages'], [1., -1., -1., 1.])
  objective = recipes.rl.make_objective(graphdef, loss_type='pg',
                                        reducer='sequence_mean_token_sum')
  loss, metrics = objective(params, batch, None)
  logp = _ref_logp(graphdef, params, batch)
  m = np.asarray(batch['loss_mask'])
  expected = np.mean(-(np.asarray(batch['advantages'])[:, None] * logp *
                       m).sum(-1))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(batch['old_logp'] * m, logp * m, atol=1e-5)
  assert metrics['loss_tokens'] == m.sum()


def test_ppo_clip_at_ratio_one_has_the_pg_gradient():
  graphdef, params, batch = _setup()
  batch = recipes.rl.make_prepare(graphdef, advantage='grpo',
                                  group_size=2)(params, params, batch)
  grads = {}
  for loss_type in ('pg', 'ppo_clip'):
    objective = recipes.rl.make_objective(graphdef, loss_type=loss_type)
    grads[loss_type] = jax.grad(lambda p: objective(p, batch, None)[0])(params)
  for a, b in zip(jax.tree.leaves(grads['pg']),
                  jax.tree.leaves(grads['ppo_clip'])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_kl_term_is_zero_at_the_reference_and_positive_elsewhere():
  graphdef, params, batch = _setup()
  batch = recipes.rl.make_prepare(graphdef, advantage='grpo',
                                  group_size=2)(params, params, batch)
  plain = recipes.rl.make_objective(graphdef, loss_type='pg')
  with_kl = recipes.rl.make_objective(graphdef, loss_type='pg', kl_coef=0.5)
  np.testing.assert_allclose(with_kl(params, batch, None)[0],
                             plain(params, batch, None)[0], atol=1e-6)
  moved = jax.tree.map(lambda x: x * 1.1, params)
  diff = with_kl(moved, batch, None)[0] - plain(moved, batch, None)[0]
  logp = _ref_logp(graphdef, moved, batch)
  m = np.asarray(batch['loss_mask'])
  d = logp - np.asarray(batch['ref_logp'])
  k3 = (np.exp(-d) + d - 1) * m
  np.testing.assert_allclose(diff, 0.5 * k3.sum() / m.sum(), rtol=1e-4)


def test_ppo_value_head_gae_and_value_loss():
  graphdef, params, batch = _setup()
  embed_dim = nnx.merge(graphdef, params).config.embed_dim
  full = {'lm': params, 'value': recipes.rl.init_value_head(embed_dim)}
  prepare = recipes.rl.make_prepare(graphdef, advantage='gae', group_size=2,
                                    lam=1.0,
                                    advantage_kwargs={'whiten_advantages':
                                                      False})
  out = prepare(full, None, batch)
  m = np.asarray(batch['loss_mask'])
  # Zero value head, γ = λ = 1: every completion token's return is the reward.
  np.testing.assert_allclose(out['returns'],
                             np.asarray(batch['rewards'])[:, None] * m)
  objective = recipes.rl.make_objective(graphdef, loss_type='ppo_clip',
                                        value_coef=0.5)
  _, metrics = objective(full, out, None)
  r = np.asarray(batch['rewards'])[:, None] * m
  np.testing.assert_allclose(metrics['value_loss'],
                             (0.5 * r ** 2).sum() / m.sum(), rtol=1e-5)


def test_bad_settings_fail_with_the_valid_choices():
  graphdef, _, _ = _setup()
  with pytest.raises(ValueError, match='online policy loss'):
    recipes.rl.make_objective(graphdef, loss_type='redi')
  with pytest.raises(ValueError, match='value head'):
    _, params, batch = _setup()
    recipes.rl.make_prepare(graphdef, advantage='gae', group_size=2)(
        params, None, batch)


def test_tis_correction_weights_tokens_by_the_capped_ratio():
  graphdef, params, batch = _setup()
  batch = recipes.rl.make_prepare(graphdef, advantage='rloo',
                                  group_size=2)(params, None, batch)
  m = np.asarray(batch['loss_mask'])
  shift = np.where(m > 0, np.linspace(-1.5, 0.5, m.size).reshape(m.shape), 0)
  batch = dict(batch, behaviour_logp=batch['old_logp'] - shift)
  plain = recipes.rl.make_objective(graphdef, loss_type='pg')
  tis = recipes.rl.make_objective(graphdef, loss_type='pg',
                                  correction='tis_token',
                                  correction_kwargs={'cap': 2.0})
  loss, metrics = tis(params, batch, None)
  logp = _ref_logp(graphdef, params, batch)
  w = np.minimum(np.exp(shift), 2.0)
  adv = np.asarray(batch['advantages'])[:, None]
  expected = (-w * adv * logp * m).sum() / m.sum()
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
  assert not np.isclose(loss, plain(params, batch, None)[0])
  assert 0 < metrics['is_ess'] <= 1
  with pytest.raises(ValueError, match='importance weights'):
    recipes.rl.make_objective(graphdef, loss_type='topr',
                              correction='tis_token')


def test_unlikeliness_scales_rewards_by_group_rank_before_the_advantage():
  graphdef, params, batch = _setup(group_size=4)
  batch['rewards'] = jnp.array([1., 1., 0., 1., 1., 1., 1., 0.])
  beta = 0.25
  out = recipes.rl.make_prepare(graphdef, advantage='rloo', group_size=4,
                                unlikeliness=beta)(params, None, batch)
  m = np.asarray(batch['loss_mask'], np.float64)
  mean_lp = (_ref_logp(graphdef, params, batch) * m).sum(-1) / m.sum(-1)
  rank = np.concatenate([np.argsort(np.argsort(g, kind='stable'))
                         for g in mean_lp.reshape(2, 4)])  # 0 = least likely
  r = np.asarray(batch['rewards'], np.float64) * (1 - beta * rank / 4)
  np.testing.assert_allclose(out['rewards'], r, rtol=1e-5)
  groups = r.reshape(2, 4)
  loo = (groups.sum(1, keepdims=True) - groups) / 3
  np.testing.assert_allclose(out['advantages'], (groups - loo).reshape(-1),
                             rtol=1e-5, atol=1e-6)
