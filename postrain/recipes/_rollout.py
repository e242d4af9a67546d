"""Rollouts for online recipes: sample G completions per prompt, score them.

The generation phase of GRPO, PPO, online DPO, STaR, RFT and TRICE:

  prompts [B] --sample G each--> completions [B·G] --reward fns--> rewards
  prompt + completion rows --assemble--> a training batch in SFT layout

Rows are in group layout: the G samples of prompt b are rows b·G … b·G+G−1,
which is what `postrain.losses.ADVANTAGES` expects.
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import math

import jax
import numpy as np

from postrain import data
from postrain import sampling

RewardFn = Callable[[str, dict], float]


@dataclasses.dataclass(frozen=True)
class Rollout:
  """G completions of each of B prompts, on the host.

  Attributes:
    prompts: int32 [B·G, P] right-padded prompt tokens (each repeated G times).
    prompt_lengths: int32 [B·G].
    completions: int32 [B·G, N] sampled tokens, stop token included.
    completion_lengths: int32 [B·G].
    logprobs: float32 [B·G, N] sampler log-probs (untempered), 0 after stop.
    done: bool [B·G] whether the row ended with a stop token.
    texts: the decoded completions (stop token removed).
    records: the B source records, each repeated G times.
  """
  prompts: np.ndarray
  prompt_lengths: np.ndarray
  completions: np.ndarray
  completion_lengths: np.ndarray
  logprobs: np.ndarray
  done: np.ndarray
  texts: list[str]
  records: list[dict]


def rollout(
    graphdef,
    params,
    tokenizer: data.Tokenizer,
    prompt_texts: Sequence[str],
    records: Sequence[dict],
    rng: jax.Array,
    *,
    group_size: int,
    max_prompt_len: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Rollout:
  """Samples `group_size` completions for each prompt (one sampler call)."""
  tokens, lengths = data.encode_prompts(tokenizer, list(prompt_texts),
                                        max_prompt_len)
  tokens = np.repeat(tokens, group_size, axis=0)
  lengths = np.repeat(lengths, group_size, axis=0)
  out = sampling.sample(
      graphdef, params, tokens, lengths, rng, max_new_tokens=max_new_tokens,
      temperature=temperature, top_k=top_k, top_p=top_p,
      stop_tokens=(tokenizer.eos_id,), pad_id=tokenizer.pad_id)
  toks, logp, lens, done = (np.asarray(a) for a in jax.device_get(
      (out.tokens, out.logprobs, out.lengths, out.done)))
  texts = [tokenizer.decode([int(t) for t in row[:n]
                             if t != tokenizer.eos_id])
           for row, n in zip(toks, lens)]
  return Rollout(tokens, lengths, toks, lens, logp, done, texts,
                 [r for r in records for _ in range(group_size)])


def score_completions(
    texts: Sequence[str],
    records: Sequence[dict],
    reward_fns: Mapping[str, tuple[RewardFn, float]],
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
  """Weighted sum of reward functions, each `fn(text, record) -> float`.

  A reward function that raises scores 0 for that sample and is counted:
  an exception is never silently a pass. A function with a `many(texts,
  records) -> [R]` method (a reward model) is called once for all samples;
  an exception there is not a verdict on any sample and propagates.

  Returns:
    `(rewards [R] float32, {name: [R]} per component, number of errors)`.
  """
  if not reward_fns:
    raise ValueError('score_completions() needs at least one reward function.')
  parts, errors = {}, 0
  for name, (fn, _) in reward_fns.items():
    if hasattr(fn, 'many'):
      parts[name] = np.asarray(fn.many(texts, records), np.float32)
      continue
    values = np.zeros(len(texts), np.float32)
    for i, (text, record) in enumerate(zip(texts, records)):
      try:
        values[i] = float(fn(text, record))
      except Exception:  # pylint: disable=broad-except
        errors += 1
    parts[name] = values
  total = sum(w * parts[name] for name, (_, w) in reward_fns.items())
  return total.astype(np.float32), parts, errors


def assemble(r: Rollout, *, pad_id: int) -> dict[str, np.ndarray]:
  """Prompt + completion rows in the SFT batch layout, loss on completions.

  Returns:
    `inputs`, `targets`, `positions`, `segment_ids` int32 and `loss_mask`,
    `behaviour_logp` float32, all [R, P + N − 1]; `behaviour_logp` holds the
    sampler's log-prob of each target that is a completion token.
  """
  n_rows, p = r.prompts.shape
  width = p + r.completions.shape[1]
  idx = np.arange(width)[None]
  pl, cl = r.prompt_lengths[:, None], r.completion_lengths[:, None]
  in_prompt = idx < pl
  j = idx - pl  # index into the completion
  in_comp = (j >= 0) & (j < cl)
  jc = np.clip(j, 0, r.completions.shape[1] - 1)
  rows = np.arange(n_rows)[:, None]
  seq = np.where(in_prompt, r.prompts[rows, np.minimum(idx, p - 1)],
                 np.where(in_comp, r.completions[rows, jc], pad_id))
  mask = in_comp[:, 1:]
  return dict(
      inputs=seq[:, :-1].astype(np.int32),
      targets=seq[:, 1:].astype(np.int32),
      positions=np.broadcast_to(np.arange(width - 1, dtype=np.int32),
                                (n_rows, width - 1)).copy(),
      segment_ids=(in_prompt | in_comp)[:, :-1].astype(np.int32),
      loss_mask=mask.astype(np.float32),
      behaviour_logp=np.where(mask, r.logprobs[rows, jc[:, 1:]],
                              0).astype(np.float32))


def pass_at_k(n: int, c: int, k: int) -> float:
  """Unbiased pass@k `1 − C(n−c, k)/C(n, k)` from n samples, c correct.

  Chen et al., *Evaluating Large Language Models Trained on Code*
  (arXiv:2107.03374). The ratio is a product, so it never overflows.

  >>> pass_at_k(4, 1, 2)  # 1 - C(3,2)/C(4,2) = 0.5
  0.5
  """
  if not 0 <= c <= n or not 1 <= k <= n:
    raise ValueError(f'pass_at_k needs 0 <= c <= n and 1 <= k <= n; got '
                     f'n={n}, c={c}, k={k}.')
  if n - c < k:
    return 1.0
  return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))
