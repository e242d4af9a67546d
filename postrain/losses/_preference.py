"""Preference optimisation and Bradley–Terry reward-model kernels.

`PREFERENCE_LOSSES` maps the registry names of `specs/preference.md` to
per-pair kernels (arrays -> loss [B]); the kernels live in
`_preference_dpo.py` (log-ratio pairs) and `_preference_more.py`
(reference-free, unpaired, J-way, iterate-anchored, cross-prompt). This module
adds the unreduced preference metrics and the reward-model loss.
"""

import jax
import jax.numpy as jnp

from postrain.losses import _preference_dpo as _dpo
from postrain.losses._preference_dpo import apo_down_loss
from postrain.losses._preference_dpo import apo_zero_loss
from postrain.losses._preference_dpo import bco_pair_loss
from postrain.losses._preference_dpo import cdpo_loss
from postrain.losses._preference_dpo import dpo_loss
from postrain.losses._preference_dpo import dpo_norm_loss
from postrain.losses._preference_dpo import exo_pair_loss
from postrain.losses._preference_dpo import ipo_loss
from postrain.losses._preference_dpo import nca_pair_loss
from postrain.losses._preference_dpo import robust_dpo_loss
from postrain.losses._preference_dpo import rpo_loss
from postrain.losses._preference_dpo import slic_hinge_loss
from postrain.losses._preference_dpo import sppo_hard_loss
from postrain.losses._preference_more import d2o_loss
from postrain.losses._preference_more import inpo_loss
from postrain.losses._preference_more import jpo_loss
from postrain.losses._preference_more import kto_loss
from postrain.losses._preference_more import kto_reference_point
from postrain.losses._preference_more import orpo_log_odds
from postrain.losses._preference_more import orpo_loss
from postrain.losses._preference_more import simpo_loss

Array = jax.Array

PREFERENCE_LOSSES = {
    'sigmoid': dpo_loss,
    'cdpo': cdpo_loss,
    'robust': robust_dpo_loss,
    'ipo': ipo_loss,
    'hinge': slic_hinge_loss,
    'dpo_norm': dpo_norm_loss,
    'rpo': rpo_loss,
    'simpo': simpo_loss,
    'orpo': orpo_loss,
    'kto': kto_loss,
    'nca_pair': nca_pair_loss,
    'exo_pair': exo_pair_loss,
    'apo_zero': apo_zero_loss,
    'apo_down': apo_down_loss,
    'sppo_hard': sppo_hard_loss,
    'bco_pair': bco_pair_loss,
    'd2o': d2o_loss,
    'inpo': inpo_loss,
    'jpo': jpo_loss,
}

__all__ = [
    'PREFERENCE_LOSSES', 'preference_diagnostics', 'ranking_accuracy',
    'idealized_ranking_accuracy', 'bradley_terry_loss', 'reward_accuracy',
    'flip_low_strength', 'dynamic_beta', 'kto_reference_point',
    'kto_diagnostics', 'orpo_diagnostics', 'orpo_log_odds',
    *(f.__name__ for f in PREFERENCE_LOSSES.values()),
]


def ranking_accuracy(logp_w, logp_l, len_w=None, len_l=None) -> Array:
  """`1[logπ_θ(y_w|x) > logπ_θ(y_l|x)]` per pair, float [B].

  Chen, Malladi et al., *Preference Learning Algorithms Do Not Learn
  Preference Rankings* (arXiv:2405.19534). With lengths, compares per-token
  means (the length-normalised variant).

  >>> ranking_accuracy(jnp.array([-1.0, -3.0]), jnp.array([-2.0, -2.0]))
  Array([1., 0.], dtype=float32)
  """
  if (len_w is None) != (len_l is None):
    raise ValueError('ranking_accuracy: pass both lengths or neither.')
  w, l = _dpo.up(logp_w), _dpo.up(logp_l)
  if len_w is not None:
    w, l = _dpo.per_token(w, len_w), _dpo.per_token(l, len_l)
  return (w > l).astype(w.dtype)


def idealized_ranking_accuracy(ref_w, ref_l, alpha, *, beta=0.1) -> Array:
  """`1[logπ_ref(y_w) − logπ_ref(y_l) + logit(α)/β > 0]`, float [B].

  Whether π* = π_ref·exp(r/β)/Z ranks the pair correctly when
  `α = P(y_w ≻ y_l) ∈ (0, 1)` (arXiv:2405.19534). Ties count as wrong.

  >>> z = jnp.zeros(1)
  >>> idealized_ranking_accuracy(z, z, jnp.full(1, 0.7))
  Array([1.], dtype=float32)
  """
  a = _dpo.up(alpha)
  logit = jnp.log(a) - jnp.log1p(-a)
  s = _dpo.up(ref_w) - _dpo.up(ref_l) + logit / _dpo.up(beta)
  return (s > 0).astype(s.dtype)


def preference_diagnostics(logp_w, logp_l, ref_w=None, ref_l=None,
                           len_w=None, len_l=None, *,
                           beta=0.1) -> dict[str, Array]:
  """Unreduced per-pair metrics of `specs/preference.md` §2, each [B].

  `rewards/*` are implicit rewards `β·h`; `rewards/accuracy` is
  `1[h_w > h_l]`. For reference-free variants (ref None) `h = logπ_θ`, the
  implicit reward under a uniform reference. The objective averages them
  (`beta` is broadcast to [B] for `beta/mean,min,max`).

  >>> z = jnp.zeros(1)
  >>> preference_diagnostics(z, z - 1, z, z)['rewards/margin'].tolist()
  [0.10000000149011612]
  """
  if (ref_w is None) != (ref_l is None) or (len_w is None) != (len_l is None):
    raise ValueError('preference_diagnostics: pass refs and lengths in pairs.')
  w, l = _dpo.up(logp_w), _dpo.up(logp_l)
  h_w = w if ref_w is None else _dpo.log_ratio(w, ref_w)
  h_l = l if ref_l is None else _dpo.log_ratio(l, ref_l)
  b = jnp.broadcast_to(_dpo.up(beta), h_w.shape)
  out = {
      'rewards/chosen': b * h_w, 'rewards/rejected': b * h_l,
      'rewards/margin': b * (h_w - h_l),
      'rewards/accuracy': (h_w > h_l).astype(h_w.dtype),
      'logps/chosen': w, 'logps/rejected': l,
      'ranking_accuracy': ranking_accuracy(w, l), 'beta': b,
  }
  if len_w is not None:
    out['logps/chosen_per_token'] = _dpo.per_token(w, len_w)
    out['logps/rejected_per_token'] = _dpo.per_token(l, len_l)
    out['ranking_accuracy_normalized'] = ranking_accuracy(w, l, len_w, len_l)
  return out


def orpo_diagnostics(logp_w, logp_l, len_w, len_l) -> dict[str, Array]:
  """ORPO metrics per pair [B]: `nll` (token-mean NLL of y_w),
  `log_odds_ratio` (`lo(y_w) − lo(y_l)`) and `log_odds_chosen` (`lo(y_w)`).

  >>> n = jnp.ones(1)
  >>> orpo_diagnostics(-n, -n, n, n)['log_odds_ratio'].tolist()
  [0.0]
  """
  m_w, m_l = _dpo.per_token(logp_w, len_w), _dpo.per_token(logp_l, len_l)
  lo_w = orpo_log_odds(m_w)
  return {'nll': -m_w, 'log_odds_ratio': lo_w - orpo_log_odds(m_l),
          'log_odds_chosen': lo_w}


def kto_diagnostics(logp, ref, logp_mismatch, ref_mismatch, desirable, *,
                    beta=0.1, axis_name=None) -> dict[str, Array]:
  """KTO metrics: `kl` (= z0, scalar), per-row implicit `rewards` β·h and the
  class indicators `desirable`/`undesirable` (sum them for class counts).

  >>> z = jnp.zeros(2)
  >>> kto_diagnostics(z, z, z, z, jnp.array([1, 0]))['undesirable'].tolist()
  [0.0, 1.0]
  """
  d = jnp.asarray(desirable).astype(jnp.float32)
  return {
      'kl': kto_reference_point(logp_mismatch, ref_mismatch,
                                axis_name=axis_name),
      'rewards': _dpo.up(beta) * _dpo.log_ratio(logp, ref),
      'desirable': d, 'undesirable': 1.0 - d,
  }


def dynamic_beta(reward_margin, *, k, beta0=0.1, w=0.1) -> Array:
  """MM-DPO per-example β: `β_i = max(1e-3, β₀·(1 + w·(1 − exp(−k·δ_i))))`.

  Zhang et al., *MM-RLHF: The Next Step Forward in Multimodal LLM Alignment*
  (arXiv:2502.10391). `δ_i = r_RM(y_w) − r_RM(y_l)` from a reward model; the
  spec gives no default for k, so it must be passed. Non-decreasing in δ.

  >>> dynamic_beta(jnp.zeros(1), k=1.0).tolist()
  [0.10000000149011612]
  """
  # exp(−kδ) is clamped in log space at ±20 (README convention 4).
  f = 1.0 - jnp.exp(jnp.clip(-k * _dpo.up(reward_margin), -20.0, 20.0))
  return jnp.maximum(1e-3, beta0 * (1.0 + w * f))


def bradley_terry_loss(r_c, r_r, *, margin=0.0, label_smoothing=0.0,
                       magnitude=1.0, centering=0.0) -> Array:
  """Bradley–Terry reward-model loss per pair [B].

  `ℓ = m·[−(1−ε)·logσ(d − μ) − ε·logσ(−(d − μ))] + c·(r_c + r_r)²`, with
  `d = r_c − r_r`. Margin μ (scalar or [B]) and smoothing ε: Wang et al.,
  *Secrets of RLHF in Large Language Models Part II: Reward Modeling*
  (arXiv:2401.06080); magnitude m (scaled BT): Wang et al.,
  *HelpSteer2-Preference: Complementing Ratings with Preferences*
  (arXiv:2410.01257). Single-pair minimiser `d* = μ + logit(1−ε)`.

  >>> z = jnp.zeros(1)
  >>> float(bradley_terry_loss(z, z)[0])
  0.693147...
  """
  r_c, r_r = _dpo.up(r_c), _dpo.up(r_r)
  z = r_c - r_r - margin
  bt = (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(z)
        - label_smoothing * jax.nn.log_sigmoid(-z))
  return magnitude * bt + centering * (r_c + r_r) ** 2


def reward_accuracy(r_c, r_r) -> Array:
  """Pairwise accuracy `1[r_c > r_r]`, float [B] (ties count as wrong).

  >>> reward_accuracy(jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0]))
  Array([1., 0.], dtype=float32)
  """
  d = _dpo.up(r_c) - _dpo.up(r_r)
  return (d > 0).astype(d.dtype)


def flip_low_strength(d_ens, *, fraction=0.2) -> Array:
  """Label-flip mask from an RM ensemble's differences `d_ens` [B, E].

  Strength `û_i = mean_e d_{i,e}`; flips the lowest-strength `fraction` of
  pairs, restricted to `û_i < 0` (the ensemble prefers the rejected side),
  so that flipped pairs end up with positive strength (arXiv:2401.06080).

  >>> flip_low_strength(jnp.array([[-2.0], [1.0], [3.0]]), fraction=0.5)
  Array([ True, False, False], dtype=bool)
  """
  # ⚠ Spec: "flip the lowest-strength 20%"; the û < 0 restriction is ours
  # (flipping a pair the ensemble agrees with would corrupt it).
  u = jnp.mean(_dpo.up(d_ens), axis=-1)
  k = int(fraction * u.shape[0])
  rank = jnp.argsort(jnp.argsort(u))  # 0 = lowest strength.
  return (rank < k) & (u < 0)

