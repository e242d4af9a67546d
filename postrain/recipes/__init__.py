"""Recipes: where kernels meet models. One module per training procedure."""

# pylint: disable=g-importing-member
from postrain.recipes import _dpo as dpo
from postrain.recipes import _memory as memory
from postrain.recipes import _reward_model as reward_model
from postrain.recipes import _rejection as rejection
from postrain.recipes import _rl as rl
from postrain.recipes import _score as score
from postrain.recipes import _sft as sft
from postrain.recipes import _trice as trice
from postrain.recipes._eval import accuracy
from postrain.recipes._eval import answer_logprobs
from postrain.recipes._eval import generate
from postrain.recipes._rollout import assemble
from postrain.recipes._rollout import pass_at_k
from postrain.recipes._rollout import rollout
from postrain.recipes._rollout import Rollout
from postrain.recipes._rollout import score_completions
