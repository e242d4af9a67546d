"""Recipes: where kernels meet models. One module per training procedure."""

from postrain.recipes import _sft as sft
from postrain.recipes._eval import accuracy
from postrain.recipes._eval import generate
from postrain.recipes import _score as score
