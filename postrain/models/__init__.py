"""Transformer language model (Flax NNX), its config and presets."""

from postrain.models._config import PRESETS
from postrain.models._config import TransformerConfig
from postrain.models._testing import random_state
from postrain.models._transformer import Cache
from postrain.models._transformer import init_cache
from postrain.models._transformer import Transformer
from postrain.models._hf import config_from_hf
from postrain.models._hf import config_to_hf
from postrain.models._hf import load_hf
from postrain.models._hf import save_hf
