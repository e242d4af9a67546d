"""Numerics shared by the kernels."""

import jax
import jax.numpy as jnp


def upcast(x) -> jax.Array:
  """At least float32, float64 kept under x64.

  Why: log-ratios and sums in bf16 lose about three digits; the exact-identity
  tests of the specs run in float64.
  """
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))
