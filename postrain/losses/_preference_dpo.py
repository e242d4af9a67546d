"""Pairwise DPO-family kernels that act on implicit log-ratios.

Shared inputs: policy sequence log-probs `logp_w, logp_l` [B], reference
log-probs `ref_w, ref_l` [B], `beta` a scalar or [B]. Derived:
`h_w = logp_w − ref_w`, `h_l = logp_l − ref_l`, `Δ = h_w − h_l`. Every kernel
returns a per-pair loss [B] to minimise, in float32 (float64 under x64).
"""

import jax
import jax.numpy as jnp

from postrain.losses._numerics import upcast

Array = jax.Array
_log_sig = jax.nn.log_sigmoid

up = upcast


def log_ratio(logp, ref) -> Array:
  """h = logπ_θ(y|x) − logπ_ref(y|x), computed after the upcast."""
  return up(logp) - up(ref)


def per_token(x, length) -> Array:
  """x / |y| with |y| clamped at 1 (why: an empty row stays finite)."""
  return up(x) / jnp.maximum(up(length), 1.0)


def _margin(logp_w, logp_l, ref_w, ref_l) -> Array:
  return log_ratio(logp_w, ref_w) - log_ratio(logp_l, ref_l)


def dpo_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1) -> Array:
  """Sigmoid DPO: `ℓ = −logσ(β·Δ)`.

  *Direct Preference Optimization: Your Language Model is Secretly a Reward
  Model* (arXiv:2305.18290). `logσ(z) = −softplus(−z)` keeps ±1e4 finite.

  >>> z = jnp.zeros(1)
  >>> float(dpo_loss(z, z, z, z)[0])  # log 2
  0.693147...
  """
  return -_log_sig(up(beta) * _margin(logp_w, logp_l, ref_w, ref_l))


def cdpo_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1, epsilon=0.0) -> Array:
  """Conservative DPO: `ℓ = −(1−ε)·logσ(βΔ) − ε·logσ(−βΔ)`.

  Mitchell, *A note on DPO with noisy preferences and relationship to IPO*
  (2023 technical note). Per-pair minimiser `βΔ* = logit(1−ε)`.

  >>> z = jnp.zeros(1)
  >>> float(cdpo_loss(z, z, z, z, epsilon=0.1)[0])
  0.693147...
  """
  z = up(beta) * _margin(logp_w, logp_l, ref_w, ref_l)
  return -(1.0 - epsilon) * _log_sig(z) - epsilon * _log_sig(-z)


def robust_dpo_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1,
                    epsilon=0.1) -> Array:
  """Robust DPO: `ℓ = [−(1−ε)·logσ(βΔ) + ε·logσ(−βΔ)] / (1 − 2ε)`.

  Chowdhury, Kini, Natarajan, *Provably Robust DPO: Aligning Language Models
  with Noisy Feedback* (arXiv:2403.00409). Unbiased under flips at rate ε:
  `(1−ε)·ℓ(Δ) + ε·ℓ(−Δ) = −logσ(βΔ)`. Values can be negative.

  >>> z = jnp.zeros(1)
  >>> float(robust_dpo_loss(z, z, z, z, epsilon=0.0)[0])
  0.693147...
  """
  if isinstance(epsilon, (int, float)) and not 0.0 <= epsilon < 0.5:
    raise ValueError(f'robust: epsilon must be in [0, 0.5), got {epsilon}.')
  z = up(beta) * _margin(logp_w, logp_l, ref_w, ref_l)
  return (-(1.0 - epsilon) * _log_sig(z) + epsilon * _log_sig(-z)) / (
      1.0 - 2.0 * epsilon)


def ipo_loss(logp_w, logp_l, ref_w, ref_l, len_w=None, len_l=None, *,
             beta=0.1, length_normalize=False) -> Array:
  """IPO: `ℓ = (Δ − 1/(2τ))²`; `beta` holds τ.

  Azar et al., *A General Theoretical Paradigm to Understand Learning from
  Human Preferences* (arXiv:2310.12036). With `length_normalize=True`, Δ is
  replaced by `h_w/|y_w| − h_l/|y_l|`.

  >>> z = jnp.zeros(1)
  >>> float(ipo_loss(z, z, z, z, beta=0.5)[0])  # (0 − 1)²
  1.0
  """
  # Paper wins over spec: the spec defaults to length_normalize=True, but the
  # paper's IPO loss (its Eq. 17) uses unnormalised sequence log-ratios.
  h_w, h_l = log_ratio(logp_w, ref_w), log_ratio(logp_l, ref_l)
  if length_normalize:
    if len_w is None or len_l is None:
      raise ValueError('ipo: length_normalize=True needs len_w and len_l.')
    h_w, h_l = per_token(h_w, len_w), per_token(h_l, len_l)
  return (h_w - h_l - 0.5 / up(beta)) ** 2


def slic_hinge_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1) -> Array:
  """RSO hinge-norm (SLiC): `ℓ = max(0, 1 − βΔ)`; margin `1/β` nats.

  Zhao et al., *SLiC-HF: Sequence Likelihood Calibration with Human Feedback*
  (arXiv:2305.10425); Liu et al., *Statistical Rejection Sampling Improves
  Preference Optimization* (arXiv:2309.06657).

  >>> z = jnp.zeros(1)
  >>> float(slic_hinge_loss(z, z, z, z)[0])
  1.0
  """
  return jax.nn.relu(1.0 - up(beta) * _margin(logp_w, logp_l, ref_w, ref_l))


def dpo_norm_loss(logp_w, logp_l, ref_w, ref_l, len_w, len_l, *,
                  beta=5.0) -> Array:
  """Length-normalised DPO: `ℓ = −logσ(β·(h_w/|y_w| − h_l/|y_l|))`.

  Lambert et al., *Tülu 3: Pushing Frontiers in Open Language Model
  Post-Training* (arXiv:2411.15124).

  >>> z, n = jnp.zeros(1), jnp.ones(1)
  >>> float(dpo_norm_loss(z, z, z, z, n, n)[0])
  0.693147...
  """
  d = (per_token(log_ratio(logp_w, ref_w), len_w)
       - per_token(log_ratio(logp_l, ref_l), len_l))
  return -_log_sig(up(beta) * d)


def rpo_loss(logp_w, logp_l, ref_w, ref_l, len_w, *, beta=0.1,
             alpha=1.0) -> Array:
  """DPO plus chosen NLL: `ℓ = −logσ(βΔ) + α·(−logπ_θ(y_w|x)/|y_w|)`.

  Pang et al., *Iterative Reasoning Preference Optimization*
  (arXiv:2404.19733).

  >>> z, n = jnp.zeros(1), jnp.ones(1)
  >>> float(rpo_loss(z - 1.0, z, z, z, n, beta=0.0)[0])  # log 2 + 1
  1.693147...
  """
  nll = -per_token(logp_w, len_w)
  return dpo_loss(logp_w, logp_l, ref_w, ref_l, beta=beta) + alpha * nll


def nca_pair_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1) -> Array:
  """NCA: `ℓ = −logσ(βh_w) − ½·logσ(−βh_w) − ½·logσ(−βh_l)`.

  Chen et al., *Noise Contrastive Alignment of Language Models with Explicit
  Rewards* (arXiv:2402.05369). Acts on absolute log-ratios, not only Δ.

  >>> z = jnp.zeros(1)
  >>> float(nca_pair_loss(z, z, z, z)[0])  # 2·log 2
  1.386294...
  """
  b = up(beta)
  w, l = b * log_ratio(logp_w, ref_w), b * log_ratio(logp_l, ref_l)
  return -_log_sig(w) - 0.5 * _log_sig(-w) - 0.5 * _log_sig(-l)


def exo_pair_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1,
                  epsilon=1e-3) -> Array:
  """EXO pairwise: `ℓ = KL(Bern(q) ‖ Bern(1−ε))`, `q = σ(βΔ)`.

  Ji et al., *Towards Efficient Exact Optimization of Language Model
  Alignment* (arXiv:2402.00856). `log q = logσ(βΔ)` in log space (why: q may
  underflow to 0 or round to 1 for extreme Δ); zero at `βΔ = logit(1−ε)`.

  >>> z = jnp.zeros(1)
  >>> round(float(exo_pair_loss(z, z, z, z, epsilon=0.5)[0]), 6)
  0.0
  """
  if isinstance(epsilon, (int, float)) and not 0.0 < epsilon < 1.0:
    raise ValueError(f'exo_pair: epsilon must be in (0, 1), got {epsilon}.')
  z = up(beta) * _margin(logp_w, logp_l, ref_w, ref_l)
  q, log_q, log_1mq = jax.nn.sigmoid(z), _log_sig(z), _log_sig(-z)
  return (q * (log_q - jnp.log1p(-epsilon))
          + (1.0 - q) * (log_1mq - jnp.log(epsilon)))


def apo_zero_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1) -> Array:
  """APO-zero: `ℓ = (1 − σ(βh_w)) + σ(βh_l)`.

  D'Oosterlinck et al., *Anchored Preference Optimization and Contrastive
  Revisions* (arXiv:2408.06266). Raises chosen, lowers rejected.

  >>> z = jnp.zeros(1)
  >>> float(apo_zero_loss(z, z, z, z)[0])
  1.0
  """
  b = up(beta)
  return (jax.nn.sigmoid(-b * log_ratio(logp_w, ref_w))
          + jax.nn.sigmoid(b * log_ratio(logp_l, ref_l)))


def apo_down_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1) -> Array:
  """APO-down: `ℓ = σ(βh_w) + (1 − σ(βΔ))`.

  D'Oosterlinck et al., *Anchored Preference Optimization and Contrastive
  Revisions* (arXiv:2408.06266). Lowers both, rejected more.

  >>> z = jnp.zeros(1)
  >>> float(apo_down_loss(z, z, z, z)[0])
  1.0
  """
  b = up(beta)
  return (jax.nn.sigmoid(b * log_ratio(logp_w, ref_w))
          + jax.nn.sigmoid(-b * _margin(logp_w, logp_l, ref_w, ref_l)))


def sppo_hard_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1) -> Array:
  """SPPO, hard labels: `ℓ = (h_w − 1/(2β))² + (h_l + 1/(2β))²`.

  Wu et al., *Self-Play Preference Optimization for Language Model Alignment*
  (arXiv:2405.00675); `beta` holds 1/η. Unique minimiser `h = ±1/(2β)`.

  >>> z = jnp.zeros(1)
  >>> float(sppo_hard_loss(z, z, z, z, beta=0.5)[0])
  2.0
  """
  c = 0.5 / up(beta)
  return ((log_ratio(logp_w, ref_w) - c) ** 2
          + (log_ratio(logp_l, ref_l) + c) ** 2)


def bco_pair_loss(logp_w, logp_l, ref_w, ref_l, *, beta=0.1,
                  delta=0.0) -> Array:
  """BCO pairwise: `ℓ = −logσ(βh_w − δ) − logσ(−(βh_l − δ))`.

  Jung et al., *Binary Classifier Optimization for Large Language Model
  Alignment* (arXiv:2404.04656). δ is a reward shift (e.g. a running mean of
  implicit rewards kept by the recipe), held under stop-gradient.

  >>> z = jnp.zeros(1)
  >>> float(bco_pair_loss(z, z, z, z)[0])
  1.386294...
  """
  b, d = up(beta), jax.lax.stop_gradient(up(delta))
  return (-_log_sig(b * log_ratio(logp_w, ref_w) - d)
          - _log_sig(-(b * log_ratio(logp_l, ref_l) - d)))
