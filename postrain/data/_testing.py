"""A tiny word-level HF tokenizer with a ChatML template, for tests/colabs."""

import json
import os

import tokenizers
from tokenizers import models
from tokenizers import pre_tokenizers

# ChatML (Qwen-style) without a default system turn.
CHATML_TEMPLATE = (
    '{% for message in messages %}'
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] }}"
    "{{ '<|im_end|>' + '\\n' }}"
    '{% endfor %}'
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ('<pad>', '<s>', '</s>', '<|im_start|>', '<|im_end|>')
WORDS = ('[UNK]', 'user', 'assistant', 'system', 'hi', 'hello', 'how', 'are',
         'you', 'fine', 'thanks', 'what', 'is', 'two', 'plus', 'four', 'ok',
         'bye', 'good', 'a', 'b', 'c', '?', '!', '.', ',')


def write_tiny_tokenizer(
    directory: str,
    *,
    chat_template: str | None = CHATML_TEMPLATE,
    bos_token: str | None = '<s>',
    eos_token: str = '<|im_end|>',
) -> int:
  """Writes tokenizer.json + tokenizer_config.json; returns the vocab size.

  Ids: `SPECIALS` first (pad 0, `<s>` 1, `</s>` 2, `<|im_start|>` 3,
  `<|im_end|>` 4), then `WORDS`. Whitespace splits words; unknown words map
  to `[UNK]`.

  Args:
    directory: created if needed.
    chat_template: written as `chat_template`, or None for none.
    bos_token: the bos string, or None for no bos.
    eos_token: the eos string.
  """
  vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
  tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token='[UNK]'))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.add_special_tokens(list(SPECIALS))
  os.makedirs(directory, exist_ok=True)
  tok.save(os.path.join(directory, 'tokenizer.json'))
  config = dict(eos_token=eos_token, pad_token='<pad>',
                tokenizer_class='PreTrainedTokenizerFast')
  if bos_token is not None:
    config['bos_token'] = bos_token
  if chat_template is not None:
    config['chat_template'] = chat_template
  with open(os.path.join(directory, 'tokenizer_config.json'), 'w') as f:
    json.dump(config, f, indent=2)
  return len(vocab)
