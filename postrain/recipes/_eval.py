"""Evaluation by sampling: generate, decode, verify."""

from collections.abc import Callable, Sequence

import jax
import numpy as np

from postrain import data
from postrain import sampling


def generate(
    graphdef,
    params,
    tokenizer: data.Tokenizer,
    prompts: Sequence[str],
    rng: jax.Array,
    *,
    max_new_tokens: int,
    batch_size: int,
    max_prompt_len: int,
    temperature: float = 0.0,
) -> list[str]:
  """Samples one completion per prompt, in fixed-size batches.

  The last batch is padded with copies of the first prompt, so every call
  has the same shapes and the sampler compiles once.
  """
  outs = []
  stop = (tokenizer.eos_id,)
  for start in range(0, len(prompts), batch_size):
    chunk = list(prompts[start:start + batch_size])
    n = len(chunk)
    chunk += [prompts[0]] * (batch_size - n)
    tokens, lengths = data.encode_prompts(tokenizer, chunk, max_prompt_len)
    out = sampling.sample(
        graphdef, params, tokens, lengths, jax.random.fold_in(rng, start),
        max_new_tokens=max_new_tokens, temperature=temperature,
        stop_tokens=stop, pad_id=tokenizer.pad_id)
    toks, lens = jax.device_get((out.tokens, out.lengths))
    for row, length in zip(toks[:n], lens[:n]):
      ids = [int(t) for t in row[:length] if t != tokenizer.eos_id]
      outs.append(tokenizer.decode(ids))
  return outs


def accuracy(
    completions: Sequence[str],
    answers: Sequence[str],
    is_correct: Callable[[str, str], bool],
) -> tuple[float, np.ndarray]:
  """Fraction of completions the verifier accepts, and the per-item bits."""
  bits = np.array([bool(is_correct(c, a))
                   for c, a in zip(completions, answers)])
  return float(bits.mean()) if len(bits) else float('nan'), bits
