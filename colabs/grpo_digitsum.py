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
# # GRPO and NSR on DigitSum: reward and exact pass@k
#
# DigitSum prompts `S s ?` have several correct answers (two-digit numbers
# whose digits sum to s), and only 90 possible answers, so pass@k is computed
# *exactly* from the model's distribution. We fit a tiny base model to a
# skewed corpus, then run the online loop by hand — sample G answers per
# prompt, score them with the verifier, compute advantages, update — for GRPO
# and for NSR (negative samples only), and compare their pass@k curves.
# Runs on a CPU in a few minutes.

# %%
import os

from flax import nnx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from postrain import data, models, recipes, train

STEPS = int(os.environ.get('POSTRAIN_COLAB_STEPS', 150))
KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# %% [markdown]
# ## Base model: SFT on the skewed corpus

# %%
tokenizer = data.CharTokenizer()
corpus = data.digitsum_corpus(20000, seed=0)
print(corpus[:3], data.digitsum_format(corpus[0]))
loader = data.make_sft_loader(corpus, tokenizer, data.digitsum_format,
                              batch_size=64, max_len=16, seed=0)
cfg = models.TransformerConfig.preset('tiny').replace(
    vocab_size=tokenizer.vocab_size, embed_dim=64, hidden_dim=256,
    head_dim=16, num_kv_heads=4, max_seq_len=32)
graphdef, params = nnx.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
sft_steps = 2 * STEPS
opt = train.make_optimizer('adamw', train.make_schedule(
    'warmup_cosine', peak=3e-3, total_steps=sft_steps,
    warmup_steps=max(sft_steps // 10, 1)))
state = train.init_state(params, opt)
sft_step = jax.jit(train.make_train_step(recipes.sft.make_objective(graphdef),
                                         opt), donate_argnums=0)
for i in range(sft_steps):
  state, m = sft_step(state, next(loader), jax.random.key(i))
base = state.params
print(f'SFT loss {float(m["loss"]):.3f}')

# %% [markdown]
# ## Exact pass@k from the answer distribution

# %%
prompts = data.digitsum_prompts()
valid = np.array([[data.digitsum_correct(y, r) for y in data.DIGITSUM_ANSWERS]
                  for r in prompts])


def pass_curve(params):
  logp = recipes.answer_logprobs(
      graphdef, params, tokenizer,
      [data.digitsum_format(r)[0] for r in prompts],
      [f' {y}' for y in data.DIGITSUM_ANSWERS], max_prompt_len=16)
  p = (np.exp(logp) * valid).sum(-1)
  return [data.exact_pass_at_k(p, k) for k in KS]


base_curve = pass_curve(base)
print('base pass@1 %.3f, pass@256 %.3f' % (base_curve[0], base_curve[-1]))

# %% [markdown]
# ## The online loop: sample → verify → advantages → update
#
# GRPO uses group z-scored advantages with the clipped surrogate; NSR
# (`w_reinforce` with λ = 0) only pushes down wrong answers.

# %%
G, P = 8, 8
verify = {'correct': (lambda t, r: float(data.digitsum_correct(t, r)), 1.0)}
stream = [prompts[i % len(prompts)] for i in range(10 ** 5)]


def run(loss_type, advantage, loss_kwargs, pm1):
  opt = train.make_optimizer('adamw', train.make_schedule(
      'constant', peak=3e-4, total_steps=STEPS))
  state = train.init_state(jax.tree.map(jnp.copy, base), opt)  # donated
  prepare = jax.jit(recipes.rl.make_prepare(graphdef, advantage=advantage,
                                            group_size=G))
  step = jax.jit(train.make_train_step(recipes.rl.make_objective(
      graphdef, loss_type=loss_type, loss_kwargs=loss_kwargs,
      reducer='sequence_mean_token_sum'), opt), donate_argnums=0)
  rewards = []
  rng = np.random.default_rng(0)
  for i in range(STEPS):
    records = [stream[j] for j in rng.integers(0, len(prompts), P)]
    out = recipes.rollout(graphdef, state.params, tokenizer,
                          [data.digitsum_format(r)[0] for r in records],
                          records, jax.random.key(i), group_size=G,
                          max_prompt_len=16, max_new_tokens=4)
    r, _, _ = recipes.score_completions(out.texts, out.records, verify)
    batch = recipes.assemble(out, pad_id=tokenizer.pad_id)
    batch.update(rewards=2 * r - 1 if pm1 else r, correct=r)
    batch = prepare(state.params, None, jax.tree.map(jnp.asarray, batch))
    state, _ = step(state, batch, jax.random.key(i))
    rewards.append(float(r.mean()))
  return rewards, pass_curve(state.params)


grpo_rewards, grpo_curve = run('ppo_clip', 'grpo', {}, False)
nsr_rewards, nsr_curve = run('w_reinforce', '', {'lam': 0.0}, True)

# %% [markdown]
# ## Reward during training, and pass@k before and after

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
smooth = lambda x: np.convolve(x, np.ones(10) / 10, mode='valid')
a.plot(smooth(grpo_rewards), label='GRPO')
a.plot(smooth(nsr_rewards), label='NSR')
a.set_xlabel('step')
a.set_ylabel('reward (10-step mean)')
a.legend()
for name, curve in (('base', base_curve), ('GRPO', grpo_curve),
                    ('NSR', nsr_curve)):
  b.plot(KS, curve, marker='o', label=name)
b.set_xscale('log', base=2)
b.set_xlabel('k')
b.set_ylabel('exact pass@k')
b.legend()
fig.tight_layout()
plt.show()
for name, curve in (('base', base_curve), ('GRPO', grpo_curve),
                    ('NSR', nsr_curve)):
  print(f'{name:5s}', ' '.join(f'{v:.3f}' for v in curve))
