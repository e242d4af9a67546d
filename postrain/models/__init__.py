"""Transformer language model (Flax NNX), its config and presets."""

from postrain.models._config import PRESETS
from postrain.models._config import TransformerConfig
from postrain.models._testing import random_state
from postrain.models._transformer import Cache
from postrain.models._transformer import init_cache
from postrain.models._transformer import Transformer
