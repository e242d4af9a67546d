"""Tokenizers, synthetic tasks with verifiers, TFDS builders, grain loaders."""

# pylint: disable=g-importing-member
from postrain.data._arithmetic import ANSWER_MARKER
from postrain.data._arithmetic import ArithmeticTask
from postrain.data._arithmetic import extract_answer
from postrain.data._arithmetic import format_prompt
from postrain.data._arithmetic import format_target
from postrain.data._arithmetic import is_correct
from postrain.data._arithmetic import split_of_question
from postrain.data._builders import arithmetic_config
from postrain.data._builders import BUILDERS
from postrain.data._builders import data_source
from postrain.data._builders import DataSource
from postrain.data._builders import JsonlText
from postrain.data._builders import JsonlTextConfig
from postrain.data._builders import prepare
from postrain.data._builders import SyntheticArithmetic
from postrain.data._builders import SyntheticArithmeticConfig
from postrain.data._formats import arithmetic_format
from postrain.data._formats import FormatFn
from postrain.data._formats import json_fields
from postrain.data._formats import jsonl_format
from postrain.data._pipeline import encode_prompts
from postrain.data._pipeline import LoaderStats
from postrain.data._pipeline import make_sft_loader
from postrain.data._pipeline import SftLoader
from postrain.data._pipeline import tokenize_example
from postrain.data._preference_task import kl_divergence
from postrain.data._preference_task import pair_fields
from postrain.data._preference_task import PreferenceTask
from postrain.data._preference_task import tilted_log_probs
from postrain.data._preference_task import tokenize_pairs
from postrain.data._preference_task import tokenize_rows
from postrain.data._tokenizers import CharTokenizer
from postrain.data._tokenizers import HFTokenizer
from postrain.data._tokenizers import load_tokenizer
from postrain.data._tokenizers import Tokenizer
