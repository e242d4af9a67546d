"""Kernels: arrays -> arrays. Pure functions over log-probs, rewards, masks.

Families sit in plain dicts keyed by the names of shared/specs, e.g.
`PREFERENCE_LOSSES['ipo']`, `POLICY_LOSSES['ppo_clip']`,
`ADVANTAGES['rloo']`. Kernels return unreduced per-token or per-example
losses; reduction is a separate named function (`REDUCERS`).
"""

# pylint: disable=g-importing-member
from postrain.losses._advantages import ADVANTAGES
from postrain.losses._advantages import ema_baseline
from postrain.losses._advantages import whiten
from postrain.losses._advantages import zero_variance_groups
from postrain.losses._kl import adaptive_kl_coef
from postrain.losses._kl import KL_ESTIMATORS
from postrain.losses._kl import kl_in_loss
from postrain.losses._kl import kl_in_reward
from postrain.losses._pg_corrections import CORRECTIONS
from postrain.losses._pg_corrections import effective_sample_size
from postrain.losses._pg_rewards import REWARD_TRANSFORMS
from postrain.losses._pg_rewards import verifier_reward
from postrain.losses._policy_gradient import entropy
from postrain.losses._policy_gradient import explained_variance
from postrain.losses._policy_gradient import POLICY_LOSSES
from postrain.losses._policy_gradient import value_loss
from postrain.losses._preference import bradley_terry_loss
from postrain.losses._preference import dynamic_beta
from postrain.losses._preference import flip_low_strength
from postrain.losses._preference import idealized_ranking_accuracy
from postrain.losses._preference import preference_diagnostics
from postrain.losses._preference import PREFERENCE_LOSSES
from postrain.losses._preference import ranking_accuracy
from postrain.losses._preference import reward_accuracy
from postrain.losses._rationale import beta_mml
from postrain.losses._rationale import beta_mml_weights
from postrain.losses._rationale import dco
from postrain.losses._rationale import dco_weights
from postrain.losses._rationale import gradient_variance
from postrain.losses._rationale import mle_aug
from postrain.losses._rationale import mml
from postrain.losses._rationale import MML_LOSSES
from postrain.losses._rationale import systematic_resample
from postrain.losses._rationale import trice_accept
from postrain.losses._rationale import trice_subsample
from postrain.losses._rationale import trice_weights
from postrain.losses._rationale import weighted_seq_logprob
from postrain.losses._reduce import REDUCERS
from postrain.losses._reduce import token_mean
from postrain.losses._reduce import valid_counts
from postrain.losses._sft import chunked_logit_stats
from postrain.losses._sft import cross_entropy
from postrain.losses._sft import logit_stats
from postrain.losses._sft import sequence_logprobs
from postrain.losses._sft import token_logprobs
from postrain.losses._score import convert
from postrain.losses._score import dsm_loss
from postrain.losses._score import dsm_weight
from postrain.losses._score import edm_loss
from postrain.losses._score import edm_loss_weight
from postrain.losses._score import edm_precond
from postrain.losses._score import edm_sigmas
from postrain.losses._score import edm_training_sigma
from postrain.losses._score import Marginal
from postrain.losses._score import PARAMETRIZATIONS
from postrain.losses._score import PROCESSES
from postrain.losses._score import sigma_bucket_means
from postrain.losses._score import sliced_score_matching
from postrain.losses._score import WEIGHTINGS
