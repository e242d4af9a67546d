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
# # postrain: a tiny transformer learns arithmetic
#
# Build the `tiny` model, fine-tune it for a few hundred steps on the
# synthetic arithmetic task, sample from it, and plot the loss curve. Every
# call is a library call; the notebook only glues them together. Runs on a
# CPU in a few minutes (`pip install -e .` first).

# %%
import os
import tempfile

from flax import nnx
import jax
import matplotlib.pyplot as plt

from postrain import data, models, recipes, train

STEPS = int(os.environ.get('POSTRAIN_COLAB_STEPS', 300))
DATA_DIR = os.environ.get('POSTRAIN_COLAB_DATA',
                          os.path.join(tempfile.gettempdir(), 'postrain_tfds'))

# %% [markdown]
# ## Data: the synthetic task, written as TFDS array_record files

# %%
tokenizer = data.CharTokenizer()
builder = data.prepare('synthetic_arithmetic', DATA_DIR, min_steps=1,
                       max_steps=2, num_train=5000, num_test=200)
train_src = data.data_source(builder, 'train')
test_src = data.data_source(builder, 'test')
fmt = data.arithmetic_format(rationale=True)
print(fmt(train_src[0]))
loader = data.make_sft_loader(train_src, tokenizer, fmt, batch_size=32,
                              max_len=48, seed=0)

# %% [markdown]
# ## Model and optimiser

# %%
cfg = models.TransformerConfig.preset('tiny').replace(
    vocab_size=tokenizer.vocab_size, embed_dim=128, hidden_dim=512,
    head_dim=32, num_kv_heads=4)
model = models.Transformer(cfg, rngs=nnx.Rngs(0))
graphdef, params = nnx.split(model)
print(f'{cfg.num_params() / 1e6:.2f}M parameters')
schedule = train.make_schedule('warmup_cosine', peak=3e-3, total_steps=STEPS,
                               warmup_steps=max(STEPS // 10, 1))
optimizer = train.make_optimizer('adamw', schedule)
state = train.init_state(params, optimizer)
step = jax.jit(train.make_train_step(
    recipes.sft.make_objective(graphdef), optimizer), donate_argnums=0)

# %% [markdown]
# ## Train

# %%
losses = []
for i in range(STEPS):
  state, metrics = step(state, next(loader), jax.random.key(i))
  losses.append(float(metrics['loss']))
print(f'loss {losses[0]:.3f} -> {losses[-1]:.3f}')

# %% [markdown]
# ## Sample and verify

# %%
records = [test_src[i] for i in range(32)]
prompts = [fmt(r)[0] for r in records]
texts = recipes.generate(graphdef, state.params, tokenizer, prompts,
                         jax.random.key(0), max_new_tokens=32, batch_size=32,
                         max_prompt_len=48)
acc, _ = recipes.accuracy(texts, [r['answer'] for r in records],
                          data.is_correct)
for p, t in list(zip(prompts, texts))[:4]:
  print(repr(p), '->', repr(t))
print(f'held-out accuracy on 32 questions: {acc:.2f}')

# %% [markdown]
# ## Loss curve

# %%
plt.figure(figsize=(5, 3))
plt.plot(losses)
plt.yscale('log')
plt.xlabel('step')
plt.ylabel('train loss')
plt.title('tiny transformer, synthetic arithmetic')
plt.tight_layout()
plt.show()
