"""Chat templates: rendering, assistant-only loss masks, the SFT format.

The tokenizer is `write_tiny_tokenizer`'s word-level vocabulary: ids 0-4 are
<pad> <s> </s> <|im_start|> <|im_end|>, then [UNK] user assistant system hi
hello how are you fine thanks ... (see `postrain.data._testing.WORDS`).
"""

import json

import jinja2
import numpy as np
import pytest

from postrain import data

IM_START, IM_END = 3, 4
USER, ASSISTANT, SYSTEM, HI, HELLO, HOW, ARE, YOU, FINE, THANKS = range(6, 16)
GOOD, QMARK = 23, 27

CONVERSATION = [
    {'role': 'system', 'content': 'good'},
    {'role': 'user', 'content': 'hi'},
    {'role': 'assistant', 'content': 'hello'},
    {'role': 'user', 'content': 'how are you ?'},
    {'role': 'assistant', 'content': 'fine thanks'},
]
IDS = [IM_START, SYSTEM, GOOD, IM_END,
       IM_START, USER, HI, IM_END,
       IM_START, ASSISTANT, HELLO, IM_END,
       IM_START, USER, HOW, ARE, YOU, QMARK, IM_END,
       IM_START, ASSISTANT, FINE, THANKS, IM_END]
MASK = [0, 0, 0, 0,
        0, 0, 0, 0,
        0, 0, 1, 1,
        0, 0, 0, 0, 0, 0, 0,
        0, 0, 1, 1, 1]

# ChatML with the assistant content and end marker in {% generation %}.
GENERATION_TEMPLATE = (
    '{% for m in messages %}'
    "{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{% if m['role'] == 'assistant' %}"
    "{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ m['content'] + '<|im_end|>' }}{% endif %}"
    "{{ '\\n' }}"
    '{% endfor %}'
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _tokenizer(tmp_path, **kw):
  data.write_tiny_tokenizer(str(tmp_path), **kw)
  return data.ChatTokenizer(str(tmp_path))


def test_render_chatml(tmp_path):
  tok = _tokenizer(tmp_path)
  assert tok.render(CONVERSATION[1:3]) == (
      '<|im_start|>user\nhi<|im_end|>\n'
      '<|im_start|>assistant\nhello<|im_end|>\n')
  assert tok.render(CONVERSATION[1:2], add_generation_prompt=True) == (
      '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n')


@pytest.mark.parametrize('template', [data.CHATML_TEMPLATE,
                                      GENERATION_TEMPLATE])
def test_multi_turn_mask(tmp_path, template):
  tok = _tokenizer(tmp_path, chat_template=template)
  ids, mask = data.encode_chat(tok, CONVERSATION, max_len=64)
  assert ids.dtype == np.int32 and mask.dtype == np.float32
  np.testing.assert_array_equal(ids, IDS)
  np.testing.assert_array_equal(mask, MASK)


def test_truncation_and_empty_mask(tmp_path):
  tok = _tokenizer(tmp_path)
  ids, mask = data.encode_chat(tok, CONVERSATION, max_len=12)
  np.testing.assert_array_equal(ids, IDS[:12])
  np.testing.assert_array_equal(mask, MASK[:12])
  with pytest.raises(ValueError, match='no assistant token'):
    data.encode_chat(tok, CONVERSATION, max_len=10)


def test_template_that_rewrites_history_fails(tmp_path):
  # The message count up front changes every prefix: spans are ambiguous.
  tok = _tokenizer(tmp_path, chat_template=(
      "{{ messages | length }}{% for m in messages %}{{ m['content'] }}"
      '{% endfor %}'))
  with pytest.raises(ValueError, match='message 2.*generation'):
    data.encode_chat(tok, CONVERSATION, max_len=64)


def test_sandbox_is_immutable(tmp_path):
  tok = _tokenizer(tmp_path, chat_template='{{ messages.append(1) }}')
  with pytest.raises(jinja2.exceptions.SecurityError):
    tok.render(CONVERSATION)
  tok = _tokenizer(tmp_path, chat_template="{{ raise_exception('no') }}")
  with pytest.raises(jinja2.exceptions.TemplateError, match='no'):
    tok.render(CONVERSATION)


def test_files_template_and_stop_ids(tmp_path):
  data.write_tiny_tokenizer(str(tmp_path), chat_template=None)
  (tmp_path / 'chat_template.jinja').write_text(GENERATION_TEMPLATE)
  (tmp_path / 'generation_config.json').write_text(
      json.dumps({'eos_token_id': [IM_END, 2]}))
  tok = data.ChatTokenizer(str(tmp_path))
  assert tok.template == GENERATION_TEMPLATE
  assert tok.stop_ids == (IM_END, 2)
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, IM_END, 0)
  tok.save(str(tmp_path / 'copy'))
  copy = data.ChatTokenizer(str(tmp_path / 'copy'))
  assert copy.render(CONVERSATION) == tok.render(CONVERSATION)
  no_template = _tokenizer(tmp_path / 'bare', chat_template=None)
  with pytest.raises(ValueError, match='no chat template'):
    no_template.render(CONVERSATION)


def test_chat_format_feeds_the_sft_pipeline(tmp_path):
  tok = _tokenizer(tmp_path)
  fmt = data.chat_format(tok, prompt_field='q', response_field='a')
  prompt, response = fmt({'q': 'hi', 'a': 'hello'})
  assert prompt == '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n'
  assert response == 'hello'  # the loader appends eos (<|im_end|>) itself
  ex = data.tokenize_example(tok, prompt, response, max_len=16)
  seq = [1, IM_START, USER, HI, IM_END, IM_START, ASSISTANT, HELLO, IM_END]
  np.testing.assert_array_equal(ex['inputs'], seq[:-1])
  np.testing.assert_array_equal(ex['targets'], seq[1:])
  np.testing.assert_array_equal(ex['loss_mask'], [0] * 6 + [1, 1])
  multi = data.chat_format(tok, messages_field='messages')
  prompt, response = multi({'messages': CONVERSATION})
  assert prompt.endswith('you ?<|im_end|>\n<|im_start|>assistant\n')
  assert response == 'fine thanks'
  with pytest.raises(ValueError, match='messages_field'):
    data.chat_format(tok, prompt_field='q')


def test_chat_format_drops_template_bos(tmp_path):
  tok = _tokenizer(tmp_path, chat_template='{{ bos_token }}' +
                   data.CHATML_TEMPLATE)
  prompt, _ = data.chat_format(tok, prompt_field='q', response_field='a')(
      {'q': 'hi', 'a': 'hello'})
  assert prompt.startswith('<|im_start|>user')  # the loader adds <s> once


def test_matches_transformers(tmp_path):
  transformers = pytest.importorskip('transformers')
  tok = _tokenizer(tmp_path, chat_template=GENERATION_TEMPLATE)
  hf = transformers.PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
  out = hf.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True,
                               return_assistant_tokens_mask=True)
  ids, mask = data.encode_chat(tok, CONVERSATION, max_len=64)
  np.testing.assert_array_equal(ids, out['input_ids'])
  np.testing.assert_array_equal(mask, out['assistant_masks'])
