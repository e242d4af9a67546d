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
# # TRICE vs STaR on synthetic arithmetic
#
# Phan et al., *Training Chain-of-Thought via Latent-Variable Inference*
# (arXiv:2312.02179) against STaR (arXiv:2203.14465). A tiny base model is
# pretrained on a noisy-rationale corpus, then fine-tuned from answers only
# with TRICE (control variate) and with STaR. We plot TRICE's proposal
# acceptance rate and the gradient variance of the control-variate and basic
# estimators on the same batches. Every step is a library call through the
# runner (`experiments.loop.run`); CPU minutes at the default sizes.

# %%
import os
import tempfile

import matplotlib.pyplot as plt

from configs import rationale_base, star, trice
from experiments import loop
from postrain import train

STEPS = int(os.environ.get('POSTRAIN_COLAB_STEPS', 40))
DATA_DIR = os.environ.get('POSTRAIN_COLAB_DATA',
                          os.path.join(tempfile.gettempdir(), 'postrain_tfds'))
ROOT = tempfile.mkdtemp()
FAST = STEPS < 10  # the test's setting: small everything


def configure(config, **overrides):
  config.unlock()
  config.data.data_dir = DATA_DIR
  small = dict(num_train=32, num_test=8) if FAST else {}
  config.data.update(small)
  config.eval.update(num_prompts=8 if FAST else 100, batch_size=8 if FAST
                     else 100, vote_prompts=4 if FAST else 32,
                     vote_samples=2 if FAST else 4)
  if FAST:
    config.model.update(num_layers=1, embed_dim=32, hidden_dim=64,
                        num_heads=2, num_kv_heads=1, head_dim=16)
  for key, value in overrides.items():
    node, *path = key.split('.')
    (config[node] if path else config)[path[0] if path else node] = value
  config.lock()
  return config


# %% [markdown]
# ## The base model: noisy rationales, some prompts hinted

# %%
base_steps = 4 * STEPS if FAST else 800
base = loop.run(configure(rationale_base.get_config('tiny'),
                          total_steps=base_steps,
                          **{'ckpt.every': base_steps}),
                f'{ROOT}/base')

# %% [markdown]
# ## TRICE (control variate) and STaR from the same base

# %%
small = {'trice.batch_size': 8, 'trice.init_batch_size': 32,
         'trice.variance_every': 1, 'trice.variance_groups': 2} if FAST else {}
runs = {
    'trice': loop.run(configure(
        trice.get_config('tiny'), total_steps=STEPS, init_from=f'{ROOT}/base',
        eval_every=max(STEPS // 2, 1), **small), f'{ROOT}/trice'),
    'star': loop.run(configure(
        star.get_config('tiny'), total_steps=STEPS, init_from=f'{ROOT}/base',
        eval_every=max(STEPS // 2, 1),
        **({'rs.generate_batch': 32, 'rs.iterations': 2} if FAST else {})),
        f'{ROOT}/star'),
}
for name, summary in runs.items():
  print(name, 'held-out accuracy', summary['before/accuracy'], '->',
        summary['after/accuracy'])

# %% [markdown]
# ## Acceptance rate and gradient variance (TRICE)

# %%
rows = train.read_metrics(f'{ROOT}/trice')
steps = [r['step'] for r in rows if 'accept_rate' in r]
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.5))
ax1.plot(steps, [r['accept_rate'] for r in rows if 'accept_rate' in r],
         label='acceptance')
ax1.plot(steps, [r['memory_acc'] for r in rows if 'memory_acc' in r],
         label='memory accuracy')
ax1.set(xlabel='step', title='TRICE chains')
ax1.legend()
var = [r for r in rows if 'grad_var/cv' in r]
ax2.plot([r['step'] for r in var], [r['grad_var/cv'] for r in var],
         label='control variate')
ax2.plot([r['step'] for r in var], [r['grad_var/basic'] for r in var],
         label='basic')
ax2.set(xlabel='step', yscale='log', title='gradient variance (same batch)')
ax2.legend()
for name in runs:
  ev = [r for r in train.read_metrics(f'{ROOT}/{name}')
        if 'eval/accuracy' in r]
  ax3.plot([r['step'] for r in ev], [r['eval/accuracy'] for r in ev],
           marker='o', label=name)
ax3.set(xlabel='step', title='held-out greedy accuracy')
ax3.legend()
fig.tight_layout()
plt.show()
