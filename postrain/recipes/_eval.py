"""Evaluation: generate, decode, verify; exact answer probabilities."""

from collections.abc import Callable, Sequence

import jax
import numpy as np

from postrain import data
from postrain import sampling
from postrain.recipes import _rl
from postrain.recipes import _rollout


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


def answer_logprobs(
    graphdef,
    params,
    tokenizer: data.Tokenizer,
    prompts: Sequence[str],
    answers: Sequence[str],
    *,
    max_prompt_len: int,
    rows_per_call: int = 512,
) -> np.ndarray:
  """Exact `log π(answer + eos | prompt)` for every pair, float64 [S, A].

  Teacher-forced, so answer spaces that can be enumerated (DigitSum's 90
  strings) give pass@k and coverage exactly instead of by sampling.
  """
  ids = [tokenizer.encode(a) + [tokenizer.eos_id] for a in answers]
  width = max(len(i) for i in ids)
  comp = np.full((len(ids), width), tokenizer.pad_id, np.int32)
  for row, i in enumerate(ids):
    comp[row, :len(i)] = i
  lens = np.array([len(i) for i in ids], np.int32)
  p_tok, p_len = data.encode_prompts(tokenizer, list(prompts), max_prompt_len)
  s, a = len(prompts), len(answers)
  pi, ai = np.repeat(np.arange(s), a), np.tile(np.arange(a), s)
  forward = jax.jit(lambda p, b: _rl.forward(graphdef, p, b)['logp'])
  out = []
  for start in range(0, s * a, rows_per_call):
    sel = slice(start, start + rows_per_call)
    n = len(pi[sel])
    pad = lambda x: np.concatenate([x, np.repeat(x[:1], rows_per_call - n,
                                                 axis=0)])
    r = _rollout.Rollout(pad(p_tok[pi[sel]]), pad(p_len[pi[sel]]),
                         pad(comp[ai[sel]]), pad(lens[ai[sel]]),
                         np.zeros((rows_per_call, width), np.float32),
                         np.ones(rows_per_call, bool), [], [])
    batch = _rollout.assemble(r, pad_id=tokenizer.pad_id)
    logp = np.asarray(forward(params, batch), np.float64)
    out.append((logp * batch['loss_mask']).sum(-1)[:n])
  return np.concatenate(out).reshape(s, a)
