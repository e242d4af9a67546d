# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # postrain: the DPO family reaches its optimum
#
# **Part 1, the bandit** (E2a of `specs/experiments.md`): a one-token
# "policy" `π_θ = softmax(θ)` over C = 16 responses, a reference
# `π_ref = softmax(θ_ref)`, a reward r and Bradley–Terry labels. Minimising
# the *population* loss `L(θ) = Σ_{i≠j} μ_i μ_j σ(r_i − r_j) ℓ(h_i, h_j)` of
# a DPO-family kernel (pairs drawn from μ = π_ref) drives π_θ to that
# variant's optimum: `π* ∝ π_ref·e^{r/β}` for `sigmoid`; IPO's own
# `π_ref·exp(p(·≻μ)/τ)`; `softmax(r/β)` for SimPO (γ = 0). Other variants
# land elsewhere on the reward–KL plane.
#
# **Part 2, a tiny LM** (E2b): the `configs/dpo.py` run, where the optimum
# over all 4096 responses is known in closed form, so `KL(π*‖π_θ)` is exact.

# %%
import inspect
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from postrain import losses

jax.config.update('jax_enable_x64', True)  # the bandit is exact in float64
STEPS = int(os.environ.get('POSTRAIN_COLAB_STEPS', 3000))

# %% [markdown]
# ## Part 1: the bandit

# %%
C, BETA = 16, 0.5
rng = np.random.default_rng(0)
theta_ref = rng.normal(size=C)
r = 2.0 * rng.normal(size=C)
log_ref = jax.nn.log_softmax(theta_ref)
mu = np.exp(log_ref)
i, j = np.where(~np.eye(C, dtype=bool))  # ordered pairs (winner i, loser j)
weight = mu[i] * mu[j] / (1 + np.exp(-(r[i] - r[j])))  # μ_i μ_j P_ij
ones = np.ones(len(i))

# Each variant's optimum (specs/preference.md §1); None: no closed form,
# compared with the sigmoid optimum π*.
p_beats_mu = (mu[None] / (1 + np.exp(-(r[:, None] - r[None])))).sum(1)
dpo_star = jax.nn.log_softmax(log_ref + r / BETA)
TARGETS = {
    'sigmoid': dpo_star,
    'ipo': jax.nn.log_softmax(log_ref + p_beats_mu / BETA),
    'simpo': jax.nn.log_softmax(r / BETA),
}
VARIANTS = ['sigmoid', 'ipo', 'simpo', 'cdpo', 'nca_pair', 'exo_pair',
            'apo_zero', 'sppo_hard', 'bco_pair']
KWARGS = {'simpo': {'gamma': 0.0}, 'cdpo': {'epsilon': 0.1}}


def population_loss(theta, name):
  logp = jax.nn.log_softmax(theta)
  ref = jnp.zeros(C) if name == 'simpo' else log_ref  # simpo: no reference
  inputs = dict(logp_w=logp[i], logp_l=logp[j], ref_w=ref[i], ref_l=ref[j],
                len_w=ones, len_l=ones)
  kernel = losses.PREFERENCE_LOSSES[name]
  names = inspect.signature(kernel).parameters
  per_pair = kernel(**{n: inputs[n] for n in names if n in inputs},
                    beta=BETA, **KWARGS.get(name, {}))
  return jnp.sum(weight * per_pair)


def kl(logp, logq):
  return float(jnp.sum(jnp.exp(logp) * (logp - logq)))


curves, finals = {}, {}
for name in VARIANTS:
  opt = optax.adam(0.05)
  theta = jnp.asarray(theta_ref)
  state = opt.init(theta)
  grad = jax.jit(jax.grad(population_loss), static_argnums=1)
  target = TARGETS.get(name, dpo_star)
  curve = []
  for t in range(STEPS):
    updates, state = opt.update(grad(theta, name), state)
    theta = optax.apply_updates(theta, updates)
    if t % 10 == 0 or t == STEPS - 1:
      curve.append(kl(target, jax.nn.log_softmax(theta)))
  curves[name] = curve
  logp = jax.nn.log_softmax(theta)
  finals[name] = (float(jnp.exp(logp) @ r), kl(logp, log_ref), curve[-1])
  print(f'{name:10s} KL(target‖π_θ) = {curve[-1]:.2e}   '
        f'E[r] = {finals[name][0]:+.3f}   KL(π_θ‖π_ref) = {finals[name][1]:.3f}'
        + ('' if name in TARGETS else '   (target: the sigmoid π*)'))

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for name, curve in curves.items():
  ax1.plot(np.arange(len(curve)) * 10, curve, label=name,
           ls='-' if name in TARGETS else ':')
ax1.set_yscale('log')
ax1.set_xlabel('Adam step')
ax1.set_ylabel('KL(target ‖ π_θ)')
ax1.set_title('each variant vs its own optimum (dotted: vs π*)')
ax1.legend(fontsize=7)
for name, (reward, kl_ref, _) in finals.items():
  ax2.scatter(kl_ref, reward)
  ax2.annotate(name, (kl_ref, reward), fontsize=7)
ax2.scatter(kl(dpo_star, log_ref), float(jnp.exp(dpo_star) @ r), marker='*',
            s=150, c='k')
ax2.set_xlabel('KL(π_θ ‖ π_ref)')
ax2.set_ylabel('E[r]')
ax2.set_title('reward–KL plane (★ = π*)')
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Part 2: a tiny LM with a known reward
#
# The `configs/dpo.py:tiny` run: π_ref is pretrained in the run's init on
# bigram strings, then each loss type trains on Bradley–Terry pairs drawn
# from it. Every evaluation sums over all 4096 responses.

# %%
jax.config.update('jax_enable_x64', False)
from configs import dpo as dpo_config  # pylint: disable=g-import-not-at-top
from experiments import loop  # pylint: disable=g-import-not-at-top
from experiments import report  # pylint: disable=g-import-not-at-top
from postrain import train  # pylint: disable=g-import-not-at-top

LM_STEPS = max(STEPS // 10, 2)
LM_LOSSES = ('sigmoid', 'ipo', 'simpo') if LM_STEPS >= 100 else ('sigmoid',)
root = tempfile.mkdtemp()
rows = []
for loss in LM_LOSSES:
  config = dpo_config.get_config(f'tiny,loss={loss}')
  config.unlock()
  config.total_steps = LM_STEPS
  config.eval_every = max(LM_STEPS // 3, 1)
  config.dpo.beta = {'simpo': 2.0}.get(loss, 0.1)
  if LM_STEPS < 100:  # the test's quick pass
    config.dpo.ref_pretrain_steps = 10
    config.eval.num_samples = 8
  config.lock()
  s = loop.run(config, os.path.join(root, loss))
  rows.append({'loss': loss, **{k: s[f'{w}/{k}'] for w in ('after',)
                                for k in ('reward_exact', 'kl_star',
                                          'kl_ref_exact', 'ranking_accuracy',
                                          'idealized_ranking_accuracy')}})
print(report.markdown_table(rows, list(rows[0])))

# %%
plt.figure(figsize=(5, 3))
for loss in LM_LOSSES:
  pts = [(m['step'], m['eval/kl_star'])
         for m in train.read_metrics(os.path.join(root, loss))
         if 'eval/kl_star' in m]
  plt.plot(*zip(*pts), marker='o', label=loss)
plt.xlabel('step')
plt.ylabel('exact KL(π* ‖ π_θ)')
plt.legend()
plt.tight_layout()
plt.show()
