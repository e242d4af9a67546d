"""Latent-rationale kernels: TRICE, MML / β-MML over a buffer, DCO (pass@N).

One shared kernel, `weighted_seq_logprob`, turns per-sequence weights into a
loss `ℓ_i = −sg(w_i)·s_i·logπ_θ(y_i|x_i)/n_i`; every method of
`specs/rationale.md` only changes the weights:

  TRICE (Phan et al., *Training Chain-of-Thought via Latent-Variable
  Inference*, arXiv:2312.02179): `trice_accept` (independence MH step),
  `trice_weights` (leave-one-out control variate on memory and proposal
  copies), `trice_subsample` (systematic resampling of L weighted terms).
  MML / β-MML (Ni et al., *Learning Math Reasoning from Self-Sampled Correct
  and Partially-Correct Solutions*, arXiv:2205.14318): `MML_LOSSES`.
  DCO (Chen et al., *Rethinking Fine-Tuning when Scaling Test-Time Compute*,
  arXiv:2502.07154): `dco`.

Weights and correctness bits are wrapped in `stop_gradient`; gradients flow
only through the log-probs. Shapes: M examples, 2M TRICE candidates, L
resampled terms, J buffer slots, T tokens.
"""

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast
from postrain.losses._sft import sequence_logprobs

Array = jax.Array
sg = jax.lax.stop_gradient

_TINY = 1e-10  # The spec's ε for the leave-one-out β and resampling weights.


def _bits(x: Array) -> Array:
  """0/1 (or bool) bits as the default float (float64 under x64)."""
  x = sg(jnp.asarray(x))
  return x.astype(jnp.promote_types(x.dtype, jnp.result_type(float)))


def _seq_logp(logp: Array, mask: Array) -> Array:
  """Σ_t m_t logπ_t; masked (possibly ±inf) entries are dropped by a where."""
  return sequence_logprobs(upcast(logp) * upcast(mask), mask)


def weighted_seq_logprob(logp: Array, mask: Array, weights: Array, *,
                         signs: Array | None = None,
                         normalizer: Array | float | str = 1.0) -> Array:
  """The shared kernel `ℓ_i = −sg(w_i)·s_i·Σ_t m_it logπ_θ(y_it) / n_i`.

  `∂ℓ_i/∂logπ_i = −w_i s_i/n_i` exactly; no gradient reaches `w`, `s`, `n`.

  Args:
    logp: [B, T] token log-probs (differentiable).
    mask: [B, T] response mask.
    weights: [B] weights w ≥ 0 (or signed weights with `signs=None`).
    signs: optional [B] signs s ∈ {+1, −1}.
    normalizer: n: a number or array broadcastable to [B] (TRICE: |V|, L),
      or `'length'` for `n_i = Σ_t m_it` (empty rows give 0).

  Returns:
    Per-sequence losses [B]; sum them (the normaliser is already applied).

  Example:
    >>> weighted_seq_logprob(jnp.array([[-1., -2.]]), jnp.ones((1, 2)),
    ...                      jnp.array([2.]), normalizer='length')  # [3.]
  """
  w = upcast(sg(weights))
  if signs is not None:
    w = w * upcast(sg(signs))
  if isinstance(normalizer, str):
    if normalizer != 'length':
      raise ValueError(
          f"normalizer={normalizer!r}: pass a number, an array or 'length'.")
    normalizer = jnp.maximum(upcast(mask).sum(-1), 1)
  return -w * _seq_logp(logp, mask) / upcast(sg(normalizer))


def trice_accept(memory, proposal, memory_correct: Array,
                 proposal_correct: Array):
  """Independence Metropolis–Hastings step of TRICE (spec §1.4, step 3).

  With proposal `q = p_θ(z|x)` and target `p_θ(z|x)·c(z, y)` the MH ratio is
  `c(z̃)/c(z)`: accept every correct proposal, reject every wrong one,
  `z' = z̃ if c̃ else z`, `c' = c̃ ∨ c`. Exact only when z̃ is drawn from the
  model itself (temperature 1, no truncation) at the current θ.

  Args:
    memory: an array or pytree of arrays with leading axis M (e.g. tokens
      [M, T] and lengths [M]).
    proposal: the same structure, the proposals z̃.
    memory_correct: [M] bool c.
    proposal_correct: [M] bool c̃.

  Returns:
    `(new_memory, new_correct)`; `new_correct = c'` is the TRICE mask.

  Example:
    >>> trice_accept(jnp.array([1, 2]), jnp.array([5, 6]),
    ...              jnp.array([True, False]), jnp.array([False, True]))
    ... # ([1, 6], [True, True])
  """
  accept = jnp.asarray(proposal_correct).astype(bool)
  if accept.ndim != 1:
    raise ValueError(f'proposal_correct must be [M], got {accept.shape}.')

  def take(old, new):
    a = accept.reshape(accept.shape + (1,) * (jnp.ndim(old) - 1))
    return jnp.where(a, new, old)

  new_memory = jax.tree.map(take, memory, proposal)
  return new_memory, accept | jnp.asarray(memory_correct).astype(bool)


def trice_weights(proposal_correct: Array, mask: Array, *,
                  control_variate: bool = True) -> dict[str, Array]:
  """Weights of the 2M TRICE candidates `[z'_1..z'_M, z̃_1..z̃_M]`.

  `n_V = Σ mask`, leave-one-out `β_m = (Σ_j c̃_j − c̃_m)/(n_V − 1 + 1e-10)`
  (β ≡ 0 without the control variate), `w = [mask·(1 − β c̃),
  mask·β·(1 − c̃)]`, `s = [+1…, −1…]`. With `weighted_seq_logprob(…,
  normalizer=max(n_V, 1))` summed, the gradient is the control-variate
  estimator `ĝ_CV = (1/|V|)·Σ_{m∈V} [∇logπ(z'_m) − β_m ∇logπ(z̃_m)]`; it is
  unbiased because `E_{z̃~π_θ}[∇logπ(z̃)] = 0` and β_m does not depend on z̃_m.
  Phan et al. (arXiv:2312.02179), spec §1.4–1.5.

  Args:
    proposal_correct: [M] c̃ (bool or 0/1).
    mask: [M] the updated memory correctness `c' = c̃ ∨ c` from
      `trice_accept`.
    control_variate: False gives the basic estimator (β ≡ 0).

  Returns:
    dict with `weights` [2M] (≥ 0), `signs` [2M], `beta` [M] (0 off V),
    `n_valid` (scalar n_V) and `normalizer` (`max(n_V, 1)`).

  Example:
    >>> trice_weights(jnp.array([1., 0.]), jnp.array([1., 1.]))['weights']
    ... # [1., 1., 0., 1.]  (β = [0, 1])
  """
  v = _bits(mask)
  c = _bits(proposal_correct) * v  # why ·v: c̃ = 1 implies mask = 1.
  n_valid = v.sum()
  if control_variate:
    beta = v * (c.sum() - c) / (n_valid - 1 + _TINY)
  else:
    beta = jnp.zeros_like(c)
  weights = jnp.concatenate([v * (1 - beta * c), v * beta * (1 - c)])
  signs = jnp.concatenate([jnp.ones_like(c), -jnp.ones_like(c)])
  return dict(weights=weights, signs=signs, beta=beta, n_valid=n_valid,
              normalizer=jnp.maximum(n_valid, 1))


def systematic_resample(key: Array, weights: Array, num_samples: int
                        ) -> Array:
  """Systematic resampling: L indices drawn proportionally to `weights`.

  `p = w/Σw`, `cdf = cumsum(p)`, `u ~ U[0, 1)`, points `(u + l)/L` for
  `l = 0..L−1`, index = first i with `cdf_i > point`. Each index is drawn
  `⌊L p_i⌋` or `⌈L p_i⌉` times and `L p_i` times in expectation. Static
  output shape `(L,)`, so it jits once whatever the weights.

  Args:
    key: PRNG key.
    weights: [K] non-negative weights with a positive sum.
    num_samples: L.

  Returns:
    int32 indices [L] into `weights`, sorted.

  Example:
    >>> systematic_resample(jax.random.key(0), jnp.array([1., 0., 3.]), 4)
    ... # [0, 2, 2, 2]
  """
  w = upcast(sg(weights))
  cdf = jnp.cumsum(w / w.sum())
  u = jax.random.uniform(key, (), dtype=cdf.dtype)
  points = (u + jnp.arange(num_samples, dtype=cdf.dtype)) / num_samples
  # why search the first K−1 boundaries: an index past the end (cdf_K
  # rounded below a point) is impossible, which is the spec's clip.
  return jnp.searchsorted(cdf[:-1], points, side='right').astype(jnp.int32)


def trice_subsample(key: Array, weights: Array, signs: Array, n_valid: Array,
                    *, num_samples: int = 64) -> dict[str, Array]:
  """Subsampled TRICE estimator: L of the 2M candidates (spec §1.4, 6b).

  `w ← max(w, 1e-10)`, `idx = systematic_resample(key, w, L)`,
  `W̄ = Σ_i w_i / max(n_V, 1)`; the loss is
  `Σ_l weighted_seq_logprob(logp[idx_l], …, W̄, signs=s[idx_l],
  normalizer=L)`. Since index i is drawn `L w_i/Σw` times in expectation,
  `E[ĝ_sub | batch] = ĝ_CV`; the backward pass always sees exactly L
  sequences. Phan et al. (arXiv:2312.02179).

  Args:
    key: PRNG key.
    weights, signs: [2M] from `trice_weights`.
    n_valid: n_V from `trice_weights`.
    num_samples: L (reference implementation: 64).

  Returns:
    dict with `indices` [L] int32 (gather the candidates' tokens with them),
    `weights` [L] (all W̄), `signs` [L] and `normalizer` (L).
  """
  w = jnp.maximum(upcast(sg(weights)), _TINY)
  idx = systematic_resample(key, w, num_samples)
  w_bar = w.sum() / jnp.maximum(upcast(sg(n_valid)), 1)
  return dict(indices=idx, weights=jnp.full((num_samples,), w_bar),
              signs=upcast(sg(signs))[idx],
              normalizer=jnp.asarray(num_samples, w.dtype))


def gradient_variance(samples) -> Array:
  """Total variance `Σ_entries Var_r[g_r]` of replicated estimates.

  The spec's §1.6 variance: `samples` is a pytree whose leaves carry a
  leading replicate axis R ≥ 2 (gradients from independent draws or
  micro-batches); the unbiased (R − 1) variance is summed over every entry.
  """
  def one(g):
    g = upcast(g)
    return jnp.sum(jnp.var(g, axis=0, ddof=1))
  return sum(jax.tree.leaves(jax.tree.map(one, samples)))


# --- MML over a buffer (§7) -------------------------------------------------


def _slots(logp: Array, mask: Array) -> tuple[Array, Array]:
  """Sequence log-probs [B, J] and slot validity (non-empty mask) [B, J]."""
  return _seq_logp(logp, mask), (mask > 0).any(-1)


def mle_aug(logp: Array, mask: Array, *, mean: bool = True) -> Array:
  """MLE-Aug `−Σ_{z∈B} logπ(z|x)` (or the mean over valid slots), [B].

  Args:
    logp, mask: [B, J, T] token log-probs and masks of J buffer slots; a slot
      with an empty mask is invalid.
    mean: divide by the number of valid slots (rows without one give 0).
  """
  seq, valid = _slots(logp, mask)
  loss = -jnp.where(valid, seq, 0).sum(-1)
  return loss / jnp.maximum(valid.sum(-1), 1) if mean else loss


def beta_mml(logp: Array, mask: Array, *, beta: float = 1.0) -> Array:
  """β-smoothed MML `−(1/β)·logsumexp_{z∈B}(β·logπ(z|x))`, [B].

  Gradient `−Σ_z softmax(β logπ)_z ∇logπ(z|x)` (`beta_mml_weights`): β = 1
  weights buffer entries by their posterior (MML), β → 0 uniformly.
  Ni et al. (arXiv:2205.14318).

  Args:
    logp, mask: [B, J, T] as in `mle_aug`.
    beta: β > 0.

  Returns:
    [B]; 0 with zero gradient for a row without a valid slot.

  Example:
    >>> beta_mml(jnp.log(jnp.array([[[.2], [.3]]])), jnp.ones((1, 2, 1)))
    ... # −log 0.5
  """
  if beta <= 0:
    raise ValueError(f'beta must be > 0, got {beta}.')
  seq, valid = _slots(logp, mask)
  any_valid = valid.any(-1, keepdims=True)
  # why double where: invalid slots count as −inf, and a row with none
  # falls back to finite zeros so that neither value nor gradient is NaN.
  x = jnp.where(valid, beta * seq, -jnp.inf)
  x = jnp.where(any_valid, x, 0)
  return jnp.where(any_valid[:, 0], -jax.nn.logsumexp(x, axis=-1) / beta, 0)


def mml(logp: Array, mask: Array) -> Array:
  """MML `−log Σ_{z∈B} π(z|x)`, [B]: `beta_mml` at β = 1.

  Over the full set of correct rationales it is TRICE's objective
  `−log p(y|x)`.
  """
  return beta_mml(logp, mask, beta=1.0)


def beta_mml_weights(logp: Array, mask: Array, *, beta: float = 1.0
                     ) -> Array:
  """Gradient weights `sg(softmax(β·logπ))` over valid slots, [B, J].

  With `weighted_seq_logprob` (normaliser 1) they reproduce the gradient of
  `beta_mml`; their entropy is a spec metric. Invalid slots get 0.
  """
  seq, valid = _slots(sg(logp), mask)
  x = jnp.where(valid, beta * seq, -jnp.inf)
  x = jnp.where(valid.any(-1, keepdims=True), x, 0)
  return jnp.where(valid, jax.nn.softmax(x, axis=-1), 0)


MML_LOSSES = {
    'mle_aug': mle_aug,
    'mml': mml,
    'beta_mml': beta_mml,
}


# --- DCO: pass@N loss (§8) --------------------------------------------------


def _log1mexp(x: Array) -> Array:
  """`log(1 − eˣ)` for x < 0 (Mächler's two branches, both finite here)."""
  return jnp.where(x > -jnp.log(2.0), jnp.log(-jnp.expm1(x)),
                   jnp.log1p(-jnp.exp(x)))


# Below this log p, p·N is below float precision of 1 − (1−p)^N; use the
# series `−log N − log p + (N−1)p/2` (error O(N²p²)).
_DCO_SERIES = -30.0


def _dco_seq(lp: Array, n: int) -> Array:
  lp = jnp.minimum(lp, -1e-7)
  small = lp < _DCO_SERIES
  safe = jnp.where(small, -1.0, lp)  # why: keep the unused branch finite.
  exact = -_log1mexp(n * _log1mexp(safe))
  series = -jnp.log(n) - lp + (n - 1) * jnp.exp(lp) / 2
  return jnp.where(small, series, exact)


def dco(logp: Array, mask: Array, *, n: int = 16) -> Array:
  """Pass@N loss `ℓ_N = −log(1 − (1 − p)^N)`, `p = π(y*|x)`, [B].

  Stable form: `a = log1mexp(log p)`, `ℓ_N = −log1mexp(N·a)`, `log p` clamped
  at −1e-7. `∂ℓ_N/∂log p = −F_N(p)` (`dco_weights`), which goes to 1 as
  p → 0 (cross-entropy) and to 0 as p → 1: confident examples stop being
  pushed. N = 1 is cross-entropy. Chen, Raventós, Cheng, Ganguli, Druckmann
  (arXiv:2502.07154).

  Args:
    logp, mask: [B, T] token log-probs and mask of the target answer.
    n: N, the intended test-time sample budget.

  Returns:
    [B]; 0 for an empty mask.

  Example:
    >>> dco(jnp.log(jnp.array([[.5]])), jnp.ones((1, 1)), n=2)  # −log .75
  """
  if n < 1:
    raise ValueError(f'n must be >= 1, got {n}.')
  loss = _dco_seq(_seq_logp(logp, mask), n)
  return jnp.where((mask > 0).any(-1), loss, 0)


def dco_weights(logp: Array, mask: Array, *, n: int = 16) -> Array:
  """`sg(F_N(p))`, `F_N = N p (1−p)^{N−1} / (1 − (1−p)^N) ∈ (0, 1]`, [B].

  With `weighted_seq_logprob` (normaliser 1) they reproduce the gradient of
  `dco`; their mean is a spec metric. Empty rows give 0.
  """
  lp = jnp.minimum(sg(_seq_logp(logp, mask)), -1e-7)
  small = lp < _DCO_SERIES
  safe = jnp.where(small, -1.0, lp)  # why: keep the unused branch finite.
  a = _log1mexp(safe)
  exact = jnp.exp(jnp.log(n) + safe + (n - 1) * a - _log1mexp(n * a))
  f = jnp.where(small, 1 - (n - 1) * jnp.exp(lp) / 2, exact)
  return jnp.where((mask > 0).any(-1), f, 0)
