"""Token cross-entropy and log-prob kernels, with a chunked path for large V.

Every recipe that needs log-probs goes through `logit_stats`: per token it
returns the target logit, log Z = logsumexp over the vocabulary, and the mean
logit (for label smoothing). `chunked_logit_stats` computes the same three
arrays from the final hidden states and the unembedding matrix, one chunk of
positions at a time and under `jax.checkpoint`, so neither the forward nor the
backward pass holds float32 `[B, T, V]` logits.
"""

import jax
import jax.numpy as jnp

Array = jax.Array


def _softcap(logits: Array, cap: float | None) -> Array:
  return logits if cap is None else cap * jnp.tanh(logits / cap)


def logit_stats(logits: Array, targets: Array) -> dict[str, Array]:
  """Per-token statistics of `logits` [B, T, V] at int `targets` [B, T].

  Returns:
    dict of float32 [B, T] arrays: `target` (logit of the target token),
    `log_z` (logsumexp over V), `mean` (mean logit over V) and `entropy`
    (`log Z − Σ_v softmax(z)_v z_v`, what RL recipes log and regularise).
  """
  logits = logits.astype(jnp.float32)  # why: logsumexp in bf16 loses bits.
  target = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  log_z = jax.nn.logsumexp(logits, axis=-1)
  # why where: a -inf logit has probability 0; 0·(−inf) would be NaN.
  finite = jnp.where(jnp.isfinite(logits), logits, 0.0)
  expected = jnp.sum(jax.nn.softmax(logits, axis=-1) * finite, axis=-1)
  return dict(
      target=target,
      log_z=log_z,
      mean=jnp.mean(logits, axis=-1),
      entropy=log_z - expected,
  )


def chunked_logit_stats(
    hidden: Array,
    kernel: Array,
    targets: Array,
    *,
    soft_cap: float | None = None,
    chunk_size: int = 128,
) -> dict[str, Array]:
  """`logit_stats(softcap(hidden @ kernel), targets)` without [B, T, V].

  Args:
    hidden: [B, T, D] final hidden states (any float dtype).
    kernel: [D, V] unembedding matrix.
    targets: [B, T] int target ids.
    soft_cap: final-logit soft cap `c·tanh(x/c)`, or None.
    chunk_size: positions per chunk; T is padded up to a multiple.

  Returns:
    The dict of `logit_stats`, float32 [B, T] each.
  """
  b, t, d = hidden.shape
  c = min(chunk_size, t)
  n = -(-t // c)
  pad = n * c - t
  h = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, n, c, d)
  y = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, n, c)

  # why checkpoint: the backward pass recomputes each chunk's logits instead
  # of saving them, so peak memory is one [B, c, V] block.
  @jax.checkpoint
  def one_chunk(h_c, y_c):
    logits = jnp.einsum('BTD,DV->BTV', h_c, kernel.astype(h_c.dtype),
                        preferred_element_type=jnp.float32)
    return logit_stats(_softcap(logits, soft_cap), y_c)

  stats = jax.lax.map(lambda xs: one_chunk(*xs),
                      (h.swapaxes(0, 1), y.swapaxes(0, 1)))
  return {k: v.swapaxes(0, 1).reshape(b, n * c)[:, :t]
          for k, v in stats.items()}


def token_logprobs(stats: dict[str, Array]) -> Array:
  """log π(y_t | y_<t) = target logit − log Z, float32 [B, T]."""
  return stats['target'] - stats['log_z']


def sequence_logprobs(token_logp: Array, mask: Array) -> Array:
  """log π(y|x) = Σ_t m_t · log π(y_t|·) over the response mask, [B]."""
  return jnp.sum(jnp.where(mask > 0, token_logp, 0.0), axis=-1)


def cross_entropy(
    stats: dict[str, Array],
    mask: Array,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> tuple[Array, dict[str, Array]]:
  """Masked token cross-entropy with label smoothing and z-loss, [B, T].

  ℓ_t = m_t·[log Z_t − (1−ε)·z_{y_t} − ε·mean_v z_v + c·(log Z_t)²], i.e. the
  cross-entropy against (1−ε)·onehot(y_t) + ε/V, plus the z-loss of PaLM
  (arXiv:2204.02311): c·(log Z)² keeps the softmax normaliser near 0.

  Args:
    stats: output of `logit_stats` or `chunked_logit_stats`.
    mask: [B, T], 1 on tokens that count.
    label_smoothing: ε, the mass spread uniformly over the vocabulary.
    z_loss: c, the z-loss coefficient (1e-4 in PaLM; 0 = off).

  Returns:
    (per-token loss [B, T], zero where masked; dict with the unreduced
    per-token `nll` and `log_z`).

  Example:
    >>> stats = logit_stats(jnp.zeros((1, 1, 4)), jnp.zeros((1, 1), int))
    >>> float(cross_entropy(stats, jnp.ones((1, 1)))[0][0, 0])  # log 4
    1.386...
  """
  log_z = stats['log_z']
  nll = log_z - stats['target']
  smooth = log_z - stats['mean']
  loss = (1.0 - label_smoothing) * nll + label_smoothing * smooth
  loss = loss + z_loss * jnp.square(log_z)
  # why where, not multiply: masked positions may hold inf from padding.
  loss = jnp.where(mask > 0, loss, 0.0)
  return loss, dict(nll=nll, log_z=log_z)

