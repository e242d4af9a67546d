"""Kernels: arrays -> arrays. Pure functions over log-probs, rewards, masks.

Families sit in plain dicts keyed by the names of shared/specs, e.g.
`PREFERENCE_LOSSES['ipo']`. Reduction is a separate named function.
"""

# pylint: disable=g-importing-member
from postrain.losses._preference import bradley_terry_loss
from postrain.losses._preference import dynamic_beta
from postrain.losses._preference import flip_low_strength
from postrain.losses._preference import idealized_ranking_accuracy
from postrain.losses._preference import preference_diagnostics
from postrain.losses._preference import PREFERENCE_LOSSES
from postrain.losses._preference import ranking_accuracy
from postrain.losses._preference import reward_accuracy
from postrain.losses._sft import chunked_logit_stats
from postrain.losses._sft import cross_entropy
from postrain.losses._sft import logit_stats
from postrain.losses._sft import sequence_logprobs
from postrain.losses._sft import token_logprobs
from postrain.losses._sft import token_mean
