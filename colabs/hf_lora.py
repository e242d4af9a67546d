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
# # postrain: a Hugging Face model in, LoRA, and back out
#
# Make a tiny random Qwen2 model with `transformers` (a stand-in for a real
# local checkpoint directory), load it with `postrain.models.load_hf`,
# generate from a chat prompt, LoRA fine-tune it on a few conversations with
# assistant-only loss masks, merge the adapters, export with `save_hf` and
# reload the result with `transformers`. Needs `pip install -e .[hf]`; runs
# on a CPU in about a minute.

# %%
import os
import tempfile

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import transformers

from postrain import data, models, recipes, sampling, train

STEPS = int(os.environ.get('POSTRAIN_COLAB_STEPS', 40))
WORKDIR = tempfile.mkdtemp()
SRC, OUT = os.path.join(WORKDIR, 'src'), os.path.join(WORKDIR, 'out')

# %% [markdown]
# ## A local HF directory: random weights, a tiny ChatML tokenizer

# %%
vocab = data.write_tiny_tokenizer(SRC)
hf_config = transformers.Qwen2Config(
    vocab_size=vocab, hidden_size=64, intermediate_size=128,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=128, tie_word_embeddings=True,
    bos_token_id=1, eos_token_id=4, pad_token_id=0)
torch.manual_seed(0)
transformers.Qwen2ForCausalLM(hf_config).save_pretrained(SRC)
print(sorted(os.listdir(SRC)))

# %% [markdown]
# ## Load, and generate from a chat prompt

# %%
model, tok = models.load_hf(SRC)
print(model.config)


def chat(model, messages, max_new_tokens=8):
  prompt = tok.encode(tok.render(messages, add_generation_prompt=True))
  # Dropout off for sampling (a no-op without LoRA dropout).
  graphdef, state = nnx.split(nnx.view(model, deterministic=True,
                                       raise_if_not_found=False))
  out = sampling.sample(graphdef, state, jnp.asarray([prompt]),
                        jnp.asarray([len(prompt)]), jax.random.key(0),
                        max_new_tokens=max_new_tokens, temperature=0.0,
                        stop_tokens=tok.stop_ids, pad_id=tok.pad_id)
  return tok.decode(out.tokens[0, :int(out.lengths[0])])


question = [{'role': 'user', 'content': 'what is two plus two ?'}]
print(tok.render(question, add_generation_prompt=True))
print('before:', chat(model, question))

# %% [markdown]
# ## Conversations -> token ids and assistant-only loss masks

# %%
conversations = [
    [{'role': 'user', 'content': 'what is two plus two ?'},
     {'role': 'assistant', 'content': 'four .'}],
    [{'role': 'user', 'content': 'hi'},
     {'role': 'assistant', 'content': 'hello ! how are you ?'},
     {'role': 'user', 'content': 'fine thanks'},
     {'role': 'assistant', 'content': 'good . bye'}],
]
T = 32
rows = [data.encode_chat(tok, c, max_len=T + 1) for c in conversations]
for ids, mask in rows:
  print([(tok.decode([i]), int(m)) for i, m in zip(ids, mask)][:12])


def pad(x, value):
  return np.pad(x, (0, T + 1 - len(x)), constant_values=value)


ids = np.stack([pad(i, tok.pad_id) for i, _ in rows])
mask = np.stack([pad(m, 0) for _, m in rows])
segments = np.stack([pad(np.ones(len(i), np.int32), 0) for i, _ in rows])
batch = dict(inputs=ids[:, :-1], targets=ids[:, 1:], loss_mask=mask[:, 1:],
             segment_ids=segments[:, :-1],
             positions=np.broadcast_to(np.arange(T), (len(rows), T)))
batch = jax.tree.map(jnp.asarray, batch)

# %% [markdown]
# ## LoRA fine-tune: only the adapters train, the base stays in `extra`

# %%
models.apply_lora(model, rank=4, alpha=8.0, targets=('q', 'v', 'up'),
                  dropout=0.05)
graphdef, state = nnx.split(model)
adapters, base = models.split_lora(state)
optimizer = optax.adam(3e-2)
ts = train.init_state(adapters, optimizer, extra={'base': base})
step = jax.jit(train.make_train_step(
    recipes.sft.make_objective(graphdef), optimizer, frozen_key='base',
    combine=models.combine_lora), donate_argnums=0)
for i in range(STEPS):
  ts, metrics = step(ts, batch, jax.random.key(i))
  if i % 10 == 0 or i == STEPS - 1:
    print(i, float(metrics['loss']))
print('adapter params:', sum(x.size for x in jax.tree.leaves(ts.params)),
      'of', sum(x.size for x in jax.tree.leaves(base)))

# %% [markdown]
# ## Merge, export, reload with transformers

# %%
tuned = nnx.merge(graphdef, models.combine_lora(ts.params, ts.extra['base']))
tuned = models.merge_lora(tuned)
print('after:', chat(tuned, question))
models.save_hf(tuned, tok, OUT)
print(sorted(os.listdir(OUT)))

hf = transformers.AutoModelForCausalLM.from_pretrained(OUT)
hf_tok = transformers.AutoTokenizer.from_pretrained(OUT)
tokens = np.asarray(batch['inputs'])
with torch.no_grad():
  theirs = hf(torch.as_tensor(tokens)).logits.numpy()
ours = np.asarray(tuned(jnp.asarray(tokens))[0])
print('max |logit difference|:', np.abs(theirs - ours).max())
assert np.abs(theirs - ours).max() < 1e-4
assert hf_tok.apply_chat_template(question, tokenize=False,
                                  add_generation_prompt=True) == tok.render(
                                      question, add_generation_prompt=True)
