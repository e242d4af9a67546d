"""TRICE's per-example rationale memory: a pytree in the train state.

Phan et al., *Training Chain-of-Thought via Latent-Variable Inference*
(arXiv:2312.02179), spec `rationale.md` §1.2–1.4. One row per training
example holds the chain's current rationale z_n (tokens, length), whether it
verifies (c_n) and whether it is still the hinted initial sample. Rows are
addressed by the example index of the data pipeline. The memory lives in
`TrainState.extra`, so it is sharded, donated and checkpointed with the
parameters: a resumed run continues the same chains.

All functions are pure and jit-able: `gather` reads a minibatch's rows,
`update` applies the accept-if-correct step (`losses.trice_accept`) and
writes them back.
"""

import flax.struct
import jax
import jax.numpy as jnp

from postrain.losses import trice_accept

Array = jax.Array


@flax.struct.dataclass
class RationaleMemory:
  """Rationale memory of N examples (or a gathered minibatch of M rows).

  Attributes:
    tokens: [N, T] int32 rationale tokens (plain-prompt response), padded.
    length: [N] int32 number of valid tokens.
    correct: [N] bool, the rationale ends in the correct answer; rows with
      False are masked out of the TRICE loss until a correct proposal lands.
    hinted: [N] bool, still the hinted initial sample (a metric).
  """
  tokens: Array
  length: Array
  correct: Array
  hinted: Array


def init_memory(num_examples: int, max_len: int, *,
                tokens: Array | None = None, length: Array | None = None,
                correct: Array | None = None) -> RationaleMemory:
  """Empty chains (`init="none"`), or the hinted initial rationales.

  Args:
    num_examples: N, the training-set size.
    max_len: T, the memory's token capacity.
    tokens, length, correct: hinted initialisation (spec §1.3): [N, T]
      rationales sampled with the answer as a hint but stored without it,
      their lengths and verification bits. All three or none.

  Returns:
    A `RationaleMemory`; with hinted rows, `hinted` is True everywhere.
  """
  given = [x is not None for x in (tokens, length, correct)]
  if any(given) and not all(given):
    raise ValueError('init_memory: pass tokens, length and correct together '
                     '(hinted initialisation) or none of them (empty).')
  if not any(given):
    return RationaleMemory(
        tokens=jnp.zeros((num_examples, max_len), jnp.int32),
        length=jnp.zeros((num_examples,), jnp.int32),
        correct=jnp.zeros((num_examples,), bool),
        hinted=jnp.zeros((num_examples,), bool))
  tokens = jnp.asarray(tokens, jnp.int32)
  if tokens.shape != (num_examples, max_len):
    raise ValueError(f'init_memory: tokens have shape {tokens.shape}, '
                     f'expected (num_examples, max_len) = '
                     f'{(num_examples, max_len)}.')
  return RationaleMemory(
      tokens=tokens,
      length=jnp.broadcast_to(jnp.asarray(length, jnp.int32),
                              (num_examples,)),
      correct=jnp.broadcast_to(jnp.asarray(correct, bool), (num_examples,)),
      hinted=jnp.ones((num_examples,), bool))


def gather(memory: RationaleMemory, idx: Array) -> RationaleMemory:
  """The rows of examples `idx` [M]: a `RationaleMemory` of M rows."""
  return jax.tree.map(lambda x: x[idx], memory)


def update(memory: RationaleMemory, idx: Array, proposal_tokens: Array,
           proposal_length: Array, accepted: Array
           ) -> tuple[RationaleMemory, RationaleMemory]:
  """Accept-if-correct update of the rows `idx` (spec §1.4 steps 3 and 8).

  `z'_m = z̃_m if c̃_m else z_m`, `c'_m = c̃_m ∨ c_m`, `hinted'_m = hinted_m ∧
  ¬c̃_m`; other rows are unchanged. Exact (independence Metropolis–Hastings)
  only for proposals drawn at temperature 1 without truncation from the
  current parameters.

  Args:
    memory: the full memory [N, …].
    idx: [M] distinct example indices of the minibatch.
    proposal_tokens: [M, T] proposals z̃ (same T as the memory).
    proposal_length: [M].
    accepted: [M] bool c̃, the proposal verifies.

  Returns:
    `(new_memory, rows)`: the updated memory and its updated rows [M]
    (`rows.tokens` are the z' of the loss, `rows.correct` its mask).
  """
  if proposal_tokens.shape[1:] != memory.tokens.shape[1:]:
    raise ValueError(
        f'update: proposal tokens have shape {proposal_tokens.shape}, the '
        f'memory holds rows of {memory.tokens.shape[1:]}; pad or cut the '
        'proposals to the memory length.')
  old = gather(memory, idx)
  accepted = jnp.asarray(accepted, bool)
  (tokens, length), correct = trice_accept(
      (old.tokens, old.length),
      (proposal_tokens.astype(jnp.int32), proposal_length.astype(jnp.int32)),
      old.correct, accepted)
  rows = RationaleMemory(tokens=tokens, length=length, correct=correct,
                         hinted=old.hinted & ~accepted)
  new = jax.tree.map(lambda full, r: full.at[idx].set(r), memory, rows)
  return new, rows


def memory_stats(memory: RationaleMemory) -> dict[str, Array]:
  """Spec §1.8 metrics over all N rows: `memory_acc`, `hinted_frac`."""
  return dict(memory_acc=memory.correct.mean(dtype=jnp.float32),
              hinted_frac=memory.hinted.mean(dtype=jnp.float32))
