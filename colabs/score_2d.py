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
# # postrain: denoising score matching on a 2-D Gaussian mixture
#
# Train an MLP score model with DSM (EDM preconditioning) on an 8-component
# mixture whose noised score is known in closed form, then compare the
# learned and analytic score fields and sample with Heun. Every call is a
# library call. CPU, about a minute (`pip install -e .` first).

# %%
import os

from flax import nnx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

from postrain import recipes, score, train

STEPS = int(os.environ.get('POSTRAIN_COLAB_STEPS', 1500))

# %% [markdown]
# ## Data: samples of the mixture, and its exact parameters

# %%
gmm = score.gmm_ring()
data = score.sample_gmm(jax.random.key(0), 5000, **gmm).astype(jnp.float32)
test = score.sample_gmm(jax.random.key(1), 1000, **gmm).astype(jnp.float32)
diff = recipes.score.Diffusion(process='edm', sigma_data=float(data.std()))

# %% [markdown]
# ## Model, objective, optimiser

# %%
model = score.ScoreMLP(2, hidden=128, depth=3, rngs=nnx.Rngs(0))
graphdef, params = nnx.split(model)
schedule = train.make_schedule('warmup_cosine', peak=2e-3, total_steps=STEPS,
                               warmup_steps=max(STEPS // 20, 1))
optimizer = train.make_optimizer('adamw', schedule, b2=0.99, weight_decay=0.0)
state = train.init_state(params, optimizer)
step = jax.jit(train.make_train_step(
    recipes.score.make_objective(graphdef, diff), optimizer),
    donate_argnums=0)

# %% [markdown]
# ## Train

# %%
losses = []
for i in range(STEPS):
  idx = jax.random.randint(jax.random.key(10_000 + i), (256,), 0, len(data))
  state, metrics = step(state, {'x': data[idx]}, jax.random.key(i))
  losses.append(float(metrics['loss']))
print(f'DSM loss {losses[0]:.3f} -> {losses[-1]:.3f}')

# %% [markdown]
# ## Learned vs analytic score field at three noise levels

# %%
score_fn = jax.jit(recipes.score.make_score_fn(graphdef, diff))
g = jnp.linspace(-3, 3, 15)
grid = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, sigma in zip(axes, (0.1, 0.5, 2.0)):
  learned = score_fn(state.params, grid, sigma)
  exact = score.gmm_score(grid, sigma, **gmm)
  r2 = score.score_r2(learned, exact)
  ax.quiver(*grid.T, *exact.T, color='gray', label='analytic')
  ax.quiver(*grid.T, *learned.T, color='C1', alpha=0.7, label='learned')
  ax.set_title(f'σ = {sigma}: R² = {float(r2):.3f}')
  ax.set_aspect('equal')
axes[0].legend(loc='lower left')
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Samples: Heun on the Karras schedule (N = 40, NFE 79)

# %%
ts = score.time_grid('edm', 40)
x_T = score.prior_sample(jax.random.key(2), diff.marginal, ts[0], (1000, 2))
samples, nfe = score.heun(lambda x, t: score_fn(state.params, x, t),
                          diff.marginal, ts, x_T, None)
sw = score.sliced_wasserstein(samples, test, jax.random.key(3))
print(f'NFE {int(nfe)}, MMD² {float(score.mmd2(samples, test)):.4f}, '
      f'sliced W2 {float(sw):.3f}')
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
axes[0].scatter(*test.T, s=2)
axes[0].set_title('held-out data')
axes[1].scatter(*samples.T, s=2, color='C1')
axes[1].set_title('samples')
for ax in axes:
  ax.set_aspect('equal')
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Loss curve

# %%
plt.figure(figsize=(5, 3))
plt.plot(losses)
plt.yscale('log')
plt.xlabel('step')
plt.ylabel('DSM loss (EDM weighting)')
plt.tight_layout()
plt.show()
