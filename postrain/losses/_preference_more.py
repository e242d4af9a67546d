"""Preference kernels with their own inputs: reference-free, unpaired, J-way.

`simpo` and `orpo` take no reference; `kto` takes unpaired rows; `d2o` takes
J self-samples per example; `inpo` takes the previous iterate; `jpo` lets the
two sides have different prompts. All return a per-row loss [B].
"""

import jax
import jax.numpy as jnp

from postrain.losses._preference_dpo import log_ratio
from postrain.losses._preference_dpo import per_token
from postrain.losses._preference_dpo import up

Array = jax.Array
_log_sig = jax.nn.log_sigmoid


def simpo_loss(logp_w, logp_l, len_w, len_l, *, beta=2.0, gamma=1.0,
               epsilon=0.0) -> Array:
  """SimPO: `ℓ = −logσ(z)`, `z = β·(logπ(y_w)/|y_w| − logπ(y_l)/|y_l|) − γ`.

  Meng, Xia, Chen, *SimPO: Simple Preference Optimization with a
  Reference-Free Reward* (arXiv:2405.14734). No reference model. ε > 0 adds
  label smoothing as in `cdpo`: `−(1−ε)·logσ(z) − ε·logσ(−z)`.

  >>> z, n = jnp.zeros(1), jnp.ones(1)
  >>> float(simpo_loss(z, z, n, n, gamma=0.0)[0])
  0.693147...
  """
  z = up(beta) * (per_token(logp_w, len_w) - per_token(logp_l, len_l)) - gamma
  return -(1.0 - epsilon) * _log_sig(z) - epsilon * _log_sig(-z)


def _log1mexp(a: Array) -> Array:
  """log(1 − eᵃ) for a < 0; two branches, double `where` (why: the unused
  branch must not produce NaN gradients)."""
  near = a > -jnp.log(2.0)
  a_near = jnp.where(near, a, -1.0)
  a_far = jnp.where(near, -1.0, a)
  return jnp.where(near, jnp.log(-jnp.expm1(a_near)),
                   jnp.log1p(-jnp.exp(a_far)))


def orpo_log_odds(mean_logp) -> Array:
  """`lo(y) = ℓ̄ − log(1 − e^ℓ̄)` with `ℓ̄ = min(ℓ̄, −1e-6)` (why: odds of a
  probability-1 sequence are infinite).

  >>> float(orpo_log_odds(jnp.log(jnp.full(1, 0.5)))[0])
  0.0
  """
  m = jnp.minimum(up(mean_logp), -1e-6)
  return m - _log1mexp(m)


def orpo_loss(logp_w, logp_l, len_w, len_l, *, lam=0.1) -> Array:
  """ORPO: `ℓ = −ℓ̄_w − λ·logσ(lo(y_w) − lo(y_l))`, `ℓ̄ = logπ(y|x)/|y|`.

  Hong, Lee, Thorne, *ORPO: Monolithic Preference Optimization without
  Reference Model* (arXiv:2403.07691). No reference model.

  >>> z, n = jnp.full(1, -0.7), jnp.ones(1)
  >>> float(orpo_loss(z, z, n, n, lam=1.0)[0])  # 0.7 + log 2
  1.393147...
  """
  m_w, m_l = per_token(logp_w, len_w), per_token(logp_l, len_l)
  return -m_w - lam * _log_sig(orpo_log_odds(m_w) - orpo_log_odds(m_l))


def kto_reference_point(logp_mismatch, ref_mismatch, *,
                        axis_name=None) -> Array:
  """KTO reference point `z0 = max(0, sg(mean_b[h(y'_b|x_b)]))`, a scalar.

  `(x_b, y'_b)` are mismatched pairs (y' = the completion of another row).
  `axis_name` averages over the global batch under data parallelism.
  """
  kl = jnp.mean(log_ratio(logp_mismatch, ref_mismatch))
  if axis_name is not None:
    kl = jax.lax.pmean(kl, axis_name)
  return jnp.maximum(0.0, jax.lax.stop_gradient(kl))


def kto_loss(logp, ref, logp_mismatch, ref_mismatch, desirable, *, beta=0.1,
             lambda_d=1.0, lambda_u=1.0, axis_name=None) -> Array:
  """KTO on unpaired rows: desirable `λ_D·(1 − σ(β(h − z0)))`, undesirable
  `λ_U·(1 − σ(β(z0 − h)))`, with z0 from `kto_reference_point`.

  Ethayarajh et al., *KTO: Model Alignment as Prospect Theoretic
  Optimization* (arXiv:2402.01306). `1 − σ(x)` is written `σ(−x)` (why: no
  cancellation when σ(x) ≈ 1).

  >>> z = jnp.zeros(2)
  >>> kto_loss(z, z, z, z, jnp.array([1, 0])).tolist()
  [0.5, 0.5]
  """
  z0 = kto_reference_point(logp_mismatch, ref_mismatch, axis_name=axis_name)
  x = up(beta) * (log_ratio(logp, ref) - z0)
  return jnp.where(jnp.asarray(desirable).astype(bool),
                   lambda_d * jax.nn.sigmoid(-x), lambda_u * jax.nn.sigmoid(x))


def d2o_loss(logp_samples, ref_samples, logp_l, ref_l, *, beta=0.1,
             alpha=0.1) -> Array:
  """D2O: `ℓ = −logσ((β/J)·Σ_j h_−(y_j) − α·h_+(y_l))`.

  Duan et al., *Negating Negatives: Alignment with Human Negative Samples via
  Distributional Dispreference Optimization* (arXiv:2403.03419).
  `logp_samples, ref_samples` are [B, J] (self-samples, reference π_{r−});
  `logp_l, ref_l` are [B] (the annotated negative, reference π_{r+}).

  >>> s, z = jnp.zeros((1, 3)), jnp.zeros(1)
  >>> float(d2o_loss(s, s, z, z)[0])
  0.693147...
  """
  pos = jnp.mean(log_ratio(logp_samples, ref_samples), axis=-1)
  return -_log_sig(up(beta) * pos - alpha * log_ratio(logp_l, ref_l))


def inpo_loss(logp_w, logp_l, ref_w, ref_l, prev_w, prev_l, *, eta=7.5e-3,
              tau=2.5e-3) -> Array:
  """INPO: `ℓ = (g − 1/(2η))²`, `g = D_θ − (τ/η)·D_ref − ((η−τ)/η)·D_t`.

  Zhang et al., *Iterative Nash Policy Optimization: Aligning LLMs with
  General Preferences via No-Regret Learning* (arXiv:2407.00617).
  `D_π = logπ(y_w|x) − logπ(y_l|x)`; `prev_*` are log-probs under π_t, the
  frozen iterate that generated the data. Needs 0 < τ < η.

  >>> z = jnp.zeros(1)
  >>> float(inpo_loss(z, z, z, z, z, z, eta=0.5, tau=0.25)[0])
  1.0
  """
  if isinstance(tau, (int, float)) and isinstance(eta, (int, float)):
    if not 0.0 < tau < eta:
      raise ValueError(f'inpo: need 0 < tau < eta, got {tau=}, {eta=}.')
  d_t, d_ref = up(logp_w) - up(logp_l), up(ref_w) - up(ref_l)
  d_prev = up(prev_w) - up(prev_l)
  g = d_t - (tau / eta) * d_ref - ((eta - tau) / eta) * d_prev
  return (g - 0.5 / eta) ** 2


def jpo_loss(logp_w, logp_l, ref_w, ref_l, prompt_logp_w=None,
             prompt_logp_l=None, prompt_ref_w=None, prompt_ref_l=None, *,
             beta=0.1, form='sigmoid', include_prompt=False) -> Array:
  """JPO: `ℓ = −logσ(β·[h(y_w|x_w) − h(y_l|x_l)])`, prompts may differ.

  Bansal et al., *Comparing Bad Apples to Good Oranges: Aligning Large
  Language Models via Joint Preference Optimization* (arXiv:2404.00530).
  `include_prompt=True` scores `log π(x, y) = log π(x) + log π(y|x)` for the
  policy and the reference (all four `prompt_*` arrays needed). `form`
  'hinge' gives `max(0, 1 − βΔ)`, 'ipo' gives `(Δ − 1/(2β))²`.

  >>> z = jnp.zeros(1)
  >>> float(jpo_loss(z, z, z, z)[0])
  0.693147...
  """
  h_w, h_l = log_ratio(logp_w, ref_w), log_ratio(logp_l, ref_l)
  prompts = (prompt_logp_w, prompt_logp_l, prompt_ref_w, prompt_ref_l)
  given = [p is not None for p in prompts]
  if (include_prompt and not all(given)) or (not include_prompt and any(given)):
    raise ValueError('jpo: pass all four prompt_* arrays iff include_prompt.')
  if include_prompt:
    h_w = h_w + log_ratio(prompt_logp_w, prompt_ref_w)
    h_l = h_l + log_ratio(prompt_logp_l, prompt_ref_l)
  b, d = up(beta), h_w - h_l
  if form == 'sigmoid':
    return -_log_sig(b * d)
  if form == 'hinge':
    return jax.nn.relu(1.0 - b * d)
  if form == 'ipo':
    return (d - 0.5 / b) ** 2
  raise ValueError(f"jpo: form must be 'sigmoid', 'hinge' or 'ipo': {form}.")
