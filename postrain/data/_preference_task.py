"""Preference data: a synthetic task with a known reward, and pair rows.

The synthetic task is E2b of `specs/experiments.md` on the char tokenizer. A
response is a string of `length` characters over `alphabet` (default
'abcdefgh', standing for the spec's tokens 0..7: token 3 is 'd', token 7 is
'h'), then eos; the prompt is a fixed '>'. The known reward is

  r(y) = #{t : y_t = 'd'} − 0.5·1['h' ∈ y]

and π_ref is a small LM fitted to strings from a random bigram model. All
`C^L` (8⁴ = 4096) valid responses can be enumerated, so the KL-regularised
optimum `π*(y) ∝ π_ref(y)·exp(r(y)/β)` and `KL(π*‖π_θ)` are exact sums.
A string that is not a valid response (wrong length or character, which an
LM can sample) has no reward in the spec; online recipes score it
`invalid_reward`, below every valid reward, and π* gives it no mass (it is
the optimum over distributions on valid strings).

Pairs are two independent draws of the bigram model (the distribution π_ref
is fitted to) labelled by Bradley–Terry, `P(y1 ≻ y2) = σ(r(y1) − r(y2))`;
each record keeps `alpha = σ(r_w − r_l)`, the probability that its label is
right, for the idealised ranking accuracy.
"""

import dataclasses
import itertools
from typing import Any, Sequence

import numpy as np

from postrain.data import _formats
from postrain.data import _pipeline
from postrain.data import _tokenizers

SPLITS = ('train', 'test')


def _sigmoid(x: float) -> float:
  return float(0.5 * (1.0 + np.tanh(0.5 * x)))  # no overflow for any x


@dataclasses.dataclass(frozen=True)
class PreferenceTask:
  """Synthetic preference task with a closed-form reward (module docstring).

  Attributes:
    length: characters per response L.
    alphabet: the C response characters (all in the char vocabulary).
    prompt: the prompt of every record.
    target: the rewarded character (+1 per occurrence).
    penalised: the penalised character (−penalty if present).
    penalty: the penalty.
    invalid_reward: the score of a string that is not a valid response.
    concentration: Dirichlet concentration of the bigram rows (smaller is
      peakier).
    seed: everything depends only on (seed, split, count).
  """
  length: int = 4
  alphabet: str = 'abcdefgh'
  prompt: str = '>'
  target: str = 'd'
  penalised: str = 'h'
  penalty: float = 0.5
  invalid_reward: float = -1.0
  concentration: float = 1.0
  seed: int = 0

  def __post_init__(self):
    if self.length < 1 or len(set(self.alphabet)) != len(self.alphabet) or (
        len(self.alphabet) < 2):
      raise ValueError(f'PreferenceTask needs length >= 1 and >= 2 distinct '
                       f'characters; got {self.length}, {self.alphabet!r}.')
    if {self.target, self.penalised} - set(self.alphabet):
      raise ValueError(f'target {self.target!r} and penalised '
                       f'{self.penalised!r} must be in {self.alphabet!r}.')

  def is_valid(self, text: str) -> bool:
    return len(text) == self.length and set(text) <= set(self.alphabet)

  def reward(self, text: str) -> float:
    """`r(y)`; `invalid_reward` for a string that is not a valid response."""
    if not self.is_valid(text):
      return self.invalid_reward
    return text.count(self.target) - self.penalty * (self.penalised in text)

  def bigram(self) -> tuple[np.ndarray, np.ndarray]:
    """Initial probabilities [C] and transition matrix [C, C] of the data."""
    rng = np.random.default_rng([self.seed, 0])
    c = len(self.alphabet)
    init = rng.dirichlet(np.full(c, self.concentration))
    return init, rng.dirichlet(np.full(c, self.concentration), size=c)

  def responses(self) -> list[str]:
    """All `C^L` valid responses, in lexicographic order of the alphabet."""
    return [''.join(p) for p in itertools.product(self.alphabet,
                                                  repeat=self.length)]

  def rewards(self) -> np.ndarray:
    """float64 [C^L] rewards of `responses()`."""
    return np.array([self.reward(y) for y in self.responses()], np.float64)

  def bigram_log_probs(self) -> np.ndarray:
    """float64 [C^L] log-probabilities of `responses()` under the bigram."""
    init, trans = self.bigram()
    idx = np.array(list(itertools.product(range(len(self.alphabet)),
                                          repeat=self.length)))
    out = np.log(init[idx[:, 0]])
    for t in range(1, self.length):
      out += np.log(trans[idx[:, t - 1], idx[:, t]])
    return out

  def sample(self, n: int, rng: np.random.Generator) -> list[str]:
    """`n` responses drawn from the bigram model."""
    init, trans = self.bigram()
    c = len(self.alphabet)
    idx = np.zeros((n, self.length), np.int64)
    idx[:, 0] = rng.choice(c, size=n, p=init)
    for t in range(1, self.length):
      u = rng.random(n)[:, None]  # inverse-CDF draw from each row's bigram
      cdf = np.cumsum(trans[idx[:, t - 1]], axis=-1)
      idx[:, t] = np.minimum((u > cdf).sum(-1), c - 1)
    letters = np.array(list(self.alphabet))
    return [''.join(row) for row in letters[idx]]

  def corpus(self, n: int) -> list[dict[str, Any]]:
    """`n` `{'prompt', 'response'}` records: π_ref's pretraining data."""
    rng = np.random.default_rng([self.seed, 1])
    return [{'prompt': self.prompt, 'response': y}
            for y in self.sample(n, rng)]

  def pairs(self, n: int, split: str = 'train') -> list[dict[str, Any]]:
    """`n` Bradley–Terry-labelled pairs of distinct responses.

    Returns:
      Records `{'index', 'prompt', 'chosen', 'rejected', 'reward_chosen',
      'reward_rejected', 'alpha'}` with `alpha = σ(r_chosen − r_rejected)`.
    """
    if split not in SPLITS:
      raise ValueError(f'split={split!r} not in {SPLITS}.')
    rng = np.random.default_rng([self.seed, 2, SPLITS.index(split)])
    out = []
    while len(out) < n:
      a, b = self.sample(2 * n, rng), self.sample(2 * n, rng)
      u = rng.random(2 * n)
      for y1, y2, ui in zip(a, b, u):
        if y1 == y2 or len(out) == n:
          continue
        r1, r2 = self.reward(y1), self.reward(y2)
        w, l = (y1, y2) if ui < _sigmoid(r1 - r2) else (y2, y1)
        rw, rl = self.reward(w), self.reward(l)
        out.append({'index': len(out), 'prompt': self.prompt, 'chosen': w,
                    'rejected': l, 'reward_chosen': rw, 'reward_rejected': rl,
                    'alpha': _sigmoid(rw - rl)})
    return out


def tilted_log_probs(ref_logp, rewards, beta: float) -> np.ndarray:
  """`log π*` with `π* ∝ π_ref·exp(r/β)` over an enumerated set, float64."""
  z = np.asarray(ref_logp, np.float64) + np.asarray(rewards, np.float64) / beta
  top = z.max()
  return z - top - np.log(np.sum(np.exp(z - top)))


def kl_divergence(logp, logq) -> float:
  """`KL(p‖q) = Σ p·(log p − log q)` over an enumerated set, float64.

  `p` must be normalised there; `q` may leak mass outside (then the sum is
  still ≥ 0, since Σq ≤ 1).
  """
  logp, logq = np.asarray(logp, np.float64), np.asarray(logq, np.float64)
  return float(np.sum(np.exp(logp) * (logp - logq)))


def pair_fields(record: dict[str, Any], prompt_field: str = 'prompt',
                chosen_field: str = 'chosen',
                rejected_field: str = 'rejected') -> tuple[str, str, str]:
  """(prompt, chosen, rejected) of a synthetic or `JsonlText` record."""
  fields = _formats.json_fields(record)
  missing = [f for f in (prompt_field, chosen_field, rejected_field)
             if f not in fields]
  if missing:
    raise KeyError(f'preference record lacks fields {missing}; available: '
                   f'{sorted(fields)}. Set config.data.*_field.')
  return (str(fields[prompt_field]), str(fields[chosen_field]),
          str(fields[rejected_field]))


def tokenize_rows(tokenizer: _tokenizers.Tokenizer,
                  examples: Sequence[tuple[str, str]], *,
                  max_len: int) -> dict[str, np.ndarray]:
  """`(prompt, response)` rows in the SFT layout, right-padded to `max_len`.

  A row is `[bos] + prompt + response + [eos]` (see `tokenize_example`); a
  row that does not fit raises (truncation would change its log-prob).

  Returns:
    `inputs`, `targets`, `positions`, `segment_ids` int32 and `loss_mask`
    float32, each [N, max_len].
  """
  if not examples:
    raise ValueError('tokenize_rows got no examples.')
  rows = []
  for i, (prompt, response) in enumerate(examples):
    ex = _pipeline.tokenize_example(tokenizer, prompt, response,
                                    max_len=max_len, overflow='error',
                                    name=f'row {i} ({response[:40]!r})')
    n = len(ex['inputs'])
    pad = lambda x, v=0, n=n: np.pad(x, (0, max_len - n), constant_values=v)
    rows.append({'inputs': pad(ex['inputs'], tokenizer.pad_id),
                 'targets': pad(ex['targets'], tokenizer.pad_id),
                 'positions': pad(np.arange(n, dtype=np.int32)),
                 'segment_ids': pad(np.ones(n, np.int32)),
                 'loss_mask': pad(ex['loss_mask'])})
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def tokenize_pairs(tokenizer: _tokenizers.Tokenizer,
                   triples: Sequence[tuple[str, ...]], *,
                   max_len: int) -> dict[str, np.ndarray]:
  """The rows of `(prompt, chosen, rejected[, more...])` tuples, [B, R, T].

  Row 0 of axis 1 is chosen, row 1 rejected (any further responses follow,
  e.g. KTO's mismatched completion); see `tokenize_rows` for the layout.
  """
  if not triples:
    raise ValueError('tokenize_pairs got no pairs.')
  r = len(triples[0]) - 1
  rows = tokenize_rows(tokenizer, [(t[0], y) for t in triples for y in t[1:]],
                       max_len=max_len)
  return {k: v.reshape(len(triples), r, max_len) for k, v in rows.items()}
