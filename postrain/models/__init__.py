"""Transformer language model (Flax NNX), its config and presets."""

from postrain.models._config import PRESETS
from postrain.models._config import TransformerConfig
from postrain.models._testing import random_state
from postrain.models._transformer import Cache
from postrain.models._transformer import init_cache
from postrain.models._transformer import Transformer
from postrain.models._hf_config import config_from_hf
from postrain.models._hf_config import config_to_hf
from postrain.models._hf import load_hf
from postrain.models._hf import save_hf
from postrain.models._lora import apply_lora
from postrain.models._lora import combine_lora
from postrain.models._lora import LoRA
from postrain.models._lora import LoRAParam
from postrain.models._lora import LoRARng
from postrain.models._lora import merge_lora
from postrain.models._lora import split_lora
from postrain.models._lora import TARGETS as LORA_TARGETS
from postrain.models._lora import zero_adapters
