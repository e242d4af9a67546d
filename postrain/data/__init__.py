"""Tokenizers, synthetic tasks with verifiers, TFDS builders, grain loaders."""

# pylint: disable=g-importing-member
from postrain.data._arithmetic import ANSWER_MARKER
from postrain.data._arithmetic import ArithmeticTask
from postrain.data._arithmetic import extract_answer
from postrain.data._arithmetic import format_prompt
from postrain.data._arithmetic import format_target
from postrain.data._arithmetic import HINT_MARKER
from postrain.data._arithmetic import hinted_prompt
from postrain.data._arithmetic import noisy_rationale
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
from postrain.data._digitsum import ANSWERS as DIGITSUM_ANSWERS
from postrain.data._digitsum import digitsum_corpus
from postrain.data._digitsum import digitsum_correct
from postrain.data._digitsum import digitsum_format
from postrain.data._digitsum import digitsum_prompts
from postrain.data._digitsum import exact_coverage
from postrain.data._digitsum import exact_pass_at_k
from postrain.data._digitsum import RARE_SUMS as RARE_DIGIT_SUMS
from postrain.data._digitsum import valid_answers
from postrain.data._formats import arithmetic_format
from postrain.data._formats import FormatFn
from postrain.data._formats import json_fields
from postrain.data._formats import jsonl_format
from postrain.data._gsm8k import extract_gsm8k_answer
from postrain.data._gsm8k import Gsm8k
from postrain.data._gsm8k import gsm8k_config
from postrain.data._gsm8k import gsm8k_format
from postrain.data._gsm8k import gsm8k_is_correct
from postrain.data._gsm8k import Gsm8kConfig
from postrain.data._gsm8k import parse_gsm8k
from postrain.data._gsm8k import strip_calculator
from postrain.data._pipeline import encode_prompts
from postrain.data._pipeline import LoaderStats
from postrain.data._pipeline import make_sft_loader
from postrain.data._pipeline import SftLoader
from postrain.data._pipeline import tokenize_example
from postrain.data._tokenizers import CharTokenizer
from postrain.data._tokenizers import HFTokenizer
from postrain.data._tokenizers import load_tokenizer
from postrain.data._tokenizers import Tokenizer
