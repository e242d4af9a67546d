"""Loss-aggregation modes for policy-gradient losses (reducers).

Every policy-gradient kernel returns an unreduced per-token loss `ℓ [B, T]`;
one of the functions below turns it into the scalar that is minimised. With
`n_b = Σ_t m_bt` and `B'` the number of rows with `n_b > 0`:

  token_mean                    Σ m ℓ / Σ m
  sequence_mean_token_mean      (1/B') Σ_b Σ_t m ℓ / n_b
  sequence_mean_token_sum       (1/B') Σ_b Σ_t m ℓ
  sequence_mean_token_sum_norm  (1/B') Σ_b Σ_t m ℓ / L_norm
  example_mean                  Σ_b v ℓ_b / Σ_b v          (per-example ℓ [B])

Denominators are global under data parallelism: pass `axis_name` to `psum`
them. An empty mask gives 0 (never NaN); `valid_counts` reports the counts so
that an objective can refuse to step on an empty batch.
"""

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast

Array = jax.Array



def _psum(x: Array, axis_name: str | None) -> Array:
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def _safe_div(num: Array, den: Array) -> Array:
  # why double where: an empty mask gives 0 and a zero gradient, not NaN.
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def _masked(loss: Array, mask: Array) -> Array:
  return jnp.where(mask > 0, upcast(loss), 0) * upcast(mask)


def valid_counts(mask: Array, *, axis_name: str | None = None) -> dict:
  """Global valid-token and valid-sequence counts of a [B, T] mask."""
  m = upcast(mask)
  return dict(tokens=_psum(m.sum(), axis_name),
              sequences=_psum((m.sum(-1) > 0).sum().astype(m.dtype),
                              axis_name))


def token_mean(loss: Array, mask: Array, *,
               axis_name: str | None = None) -> Array:
  """DAPO-style token-level mean `Σ m ℓ / Σ m`.

  Example:
    >>> token_mean(jnp.array([[1., 3.]]), jnp.array([[1., 0.]]))  # 1.0
  """
  num = _psum(_masked(loss, mask).sum(), axis_name)
  return _safe_div(num, valid_counts(mask, axis_name=axis_name)['tokens'])


def sequence_mean_token_mean(loss: Array, mask: Array, *,
                             axis_name: str | None = None) -> Array:
  """Original GRPO / GSPO mode `(1/B') Σ_b Σ_t m ℓ / n_b`."""
  per_seq = _safe_div(_masked(loss, mask).sum(-1), upcast(mask).sum(-1))
  num = _psum(per_seq.sum(), axis_name)
  return _safe_div(num, valid_counts(mask, axis_name=axis_name)['sequences'])


def sequence_mean_token_sum(loss: Array, mask: Array, *,
                            axis_name: str | None = None) -> Array:
  """Sequence-level REINFORCE mode `(1/B') Σ_b Σ_t m ℓ`."""
  num = _psum(_masked(loss, mask).sum(), axis_name)
  return _safe_div(num, valid_counts(mask, axis_name=axis_name)['sequences'])


def sequence_mean_token_sum_norm(loss: Array, mask: Array, *,
                                 norm: float | None = None,
                                 axis_name: str | None = None) -> Array:
  """Dr.GRPO mode `(1/B') Σ_b Σ_t m ℓ / L_norm`, `L_norm` default T.

  Liu et al., *Understanding R1-Zero-Like Training: A Critical Perspective*
  (arXiv:2503.20783): a constant normaliser removes the length bias of
  `sequence_mean_token_mean`.
  """
  norm = loss.shape[-1] if norm is None else norm
  return sequence_mean_token_sum(loss, mask, axis_name=axis_name) / norm


def example_mean(loss: Array, valid: Array | None = None, *,
                 axis_name: str | None = None) -> Array:
  """Per-example mean `Σ_b v ℓ_b / Σ_b v` for per-example losses [B]."""
  valid = jnp.ones(loss.shape) if valid is None else valid
  num = _psum(_masked(loss, valid).sum(), axis_name)
  return _safe_div(num, _psum(upcast(valid).sum(), axis_name))


REDUCERS = {
    'token_mean': token_mean,
    'sequence_mean_token_mean': sequence_mean_token_mean,
    'sequence_mean_token_sum': sequence_mean_token_sum,
    'sequence_mean_token_sum_norm': sequence_mean_token_sum_norm,
    'example_mean': example_mean,
}
