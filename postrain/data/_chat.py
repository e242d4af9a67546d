"""Chat templates: render conversations and mask assistant turns for SFT.

A Hugging Face model directory stores its chat template (jinja2) in
`tokenizer_config.json` (`chat_template`) or in `chat_template.jinja`.
`ChatTokenizer` is an `HFTokenizer` that also reads the template, the special
token strings and the stop ids of `generation_config.json`; it renders
conversations in a sandboxed jinja2 environment, as `transformers` does.

`encode_chat` tokenizes a whole multi-turn conversation and marks the tokens
of assistant turns. The spans come from `{% generation %}` blocks when the
template has them, else from rendering prefixes: assistant turn i spans from
the end of `render(messages[:i], add_generation_prompt=True)` to the end of
`render(messages[:i + 1])`, which must both be prefixes of the full render.

Example (a ChatML template):
  >>> tok = ChatTokenizer('/path/to/hf_dir')
  >>> msgs = [{'role': 'user', 'content': 'Hi'},
  ...         {'role': 'assistant', 'content': 'Hello'}]
  >>> tok.render(msgs)
  '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello<|im_end|>\\n'
  >>> ids, mask = encode_chat(tok, msgs, max_len=64)  # 1 on Hello<|im_end|>
"""

import datetime
import json
import os
from typing import Any, Sequence

import jinja2
from jinja2 import ext as jinja_ext
from jinja2 import nodes
from jinja2 import sandbox
import numpy as np

from postrain.data import _formats
from postrain.data import _tokenizers

Message = dict[str, Any]

# Private-use characters that bracket `{% generation %}` output while
# rendering; they are removed before tokenization.
_OPEN, _CLOSE = '\ue000', '\ue001'


class _Generation(jinja_ext.Extension):
  """`{% generation %}...{% endgeneration %}`: brackets its output."""

  tags = {'generation'}

  def parse(self, parser):
    lineno = next(parser.stream).lineno
    body = parser.parse_statements(('name:endgeneration',), drop_needle=True)
    call = self.call_method('_mark')
    return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

  def _mark(self, caller):
    return _OPEN + caller() + _CLOSE


def _raise_exception(message):
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None,
            sort_keys=False):
  # Templates expect non-ASCII text kept as is, like transformers' filter.
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                    separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
  return datetime.datetime.now().strftime(fmt)


def compile_template(source: str) -> jinja2.Template:
  """Compiles a chat template in an immutable jinja2 sandbox."""
  env = sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True,
      lstrip_blocks=True,
      extensions=[_Generation, jinja_ext.loopcontrols],
  )
  env.filters['tojson'] = _tojson
  env.globals['raise_exception'] = _raise_exception
  env.globals['strftime_now'] = _strftime_now
  return env.from_string(source)


def _read_json(file: str) -> dict[str, Any]:
  if not os.path.isfile(file):
    return {}
  with open(file) as f:
    return json.load(f)


def _template_source(directory: str, config: dict[str, Any]) -> str | None:
  """The chat template of a model directory, or None when it has none."""
  file = os.path.join(directory, 'chat_template.jinja')
  if os.path.isfile(file):
    with open(file) as f:
      return f.read()
  source = config.get('chat_template')
  if isinstance(source, list):  # named templates: [{name, template}, ...]
    named = {t['name']: t['template'] for t in source}
    if 'default' not in named:
      raise ValueError(
          f'{directory}: chat_template has no "default" entry; names: '
          f'{sorted(named)}.'
      )
    source = named['default']
  return source


class ChatTokenizer(_tokenizers.HFTokenizer):
  """An `HFTokenizer` that also knows the chat template and stop ids.

  Attributes:
    directory: the model or tokenizer directory it was read from.
    config: the `tokenizer_config.json` dict (empty when absent).
    template: the chat template source, or None.
    stop_ids: ids that end generation: `eos_token_id` of
      `generation_config.json` (an int or a list) when present, else eos.
  """

  def __init__(self, path: str, *, chat_template: str | None = None,
               **special_tokens):
    """Loads the tokenizer of `path`.

    Args:
      path: directory holding tokenizer.json (and optionally
        tokenizer_config.json, chat_template.jinja, generation_config.json).
      chat_template: overrides the directory's template.
      **special_tokens: bos_token / eos_token / pad_token overrides.
    """
    super().__init__(path, **special_tokens)
    self.directory = path if os.path.isdir(path) else os.path.dirname(path)
    self.config = _read_json(
        os.path.join(self.directory, 'tokenizer_config.json'))
    self.template = chat_template or _template_source(
        self.directory, self.config)
    self._compiled = None
    gen = _read_json(os.path.join(self.directory, 'generation_config.json'))
    stop = gen.get('eos_token_id', self.eos_id)
    self.stop_ids = tuple(stop) if isinstance(stop, list) else (stop,)

  def token_text(self, token_id: int | None) -> str | None:
    """The string of a special id (as templates use it), or None."""
    return None if token_id is None else self._tok.id_to_token(token_id)

  def render(self, messages: Sequence[Message], *,
             add_generation_prompt: bool = False, **kwargs) -> str:
    """The chat template applied to `messages` (as text).

    Args:
      messages: dicts with at least 'role' and 'content'.
      add_generation_prompt: append the header of an assistant turn.
      **kwargs: extra template variables (e.g. `tools`).

    Returns:
      The rendered text; `{% generation %}` brackets are removed.
    """
    return _strip_marks(self._render(messages, add_generation_prompt,
                                     **kwargs))

  def _render(self, messages, add_generation_prompt, **kwargs):
    if self.template is None:
      raise ValueError(
          f'{self.directory}: no chat template (chat_template in '
          'tokenizer_config.json or chat_template.jinja); pass chat_template=.'
      )
    if self._compiled is None:
      self._compiled = compile_template(self.template)
    for i, m in enumerate(messages):
      if 'role' not in m:
        raise KeyError(f'message {i} has no "role": {m!r}')
    return self._compiled.render(
        messages=list(messages),
        add_generation_prompt=add_generation_prompt,
        bos_token=self.token_text(self.bos_id) or '',
        eos_token=self.token_text(self.eos_id),
        pad_token=self.token_text(self.pad_id),
        **kwargs,
    )

  def encode_with_offsets(self, text: str):
    """(ids, [(start, end)] character spans), no special tokens added."""
    enc = self._tok.encode(text, add_special_tokens=False)
    return enc.ids, enc.offsets

  def save(self, directory: str) -> None:
    """Writes tokenizer.json, tokenizer_config.json (with the template)."""
    os.makedirs(directory, exist_ok=True)
    self._tok.save(os.path.join(directory, 'tokenizer.json'))
    config = dict(self.config)
    for role, token_id in (('bos', self.bos_id), ('eos', self.eos_id),
                           ('pad', self.pad_id)):
      if token_id is not None:
        config[f'{role}_token'] = self.token_text(token_id)
    config.setdefault('tokenizer_class', 'PreTrainedTokenizerFast')
    if self.template is not None:
      config['chat_template'] = self.template
    with open(os.path.join(directory, 'tokenizer_config.json'), 'w') as f:
      json.dump(config, f, indent=2, ensure_ascii=False)


def _strip_marks(text: str) -> str:
  return text.replace(_OPEN, '').replace(_CLOSE, '')


def _marked_spans(text: str) -> tuple[str, list[tuple[int, int]]]:
  """Removes generation brackets; returns (text, [(start, end)] spans)."""
  out, spans, start = [], [], None
  pos = 0
  for ch in text:
    if ch == _OPEN:
      start = pos
    elif ch == _CLOSE:
      spans.append((start, pos))
    else:
      out.append(ch)
      pos += 1
  return ''.join(out), spans


def _prefix_spans(tok: ChatTokenizer, messages, full: str, **kwargs):
  """Assistant spans by rendering prefixes of the conversation."""
  spans = []
  for i, m in enumerate(messages):
    if m['role'] != 'assistant':
      continue
    before = tok.render(messages[:i], add_generation_prompt=True, **kwargs)
    upto = tok.render(messages[: i + 1], **kwargs)
    if not (upto.startswith(before) and full.startswith(upto)):
      raise ValueError(
          f'message {i}: the chat template does not render conversations '
          'prefix by prefix (e.g. it rewrites earlier turns), so assistant '
          'spans cannot be found; wrap assistant content in '
          '{% generation %}...{% endgeneration %} in the template.'
      )
    spans.append((len(before), len(upto)))
  return spans


def chat_spans(tok: ChatTokenizer, messages: Sequence[Message], **kwargs):
  """(rendered text, [(start, end)] character spans of assistant turns)."""
  messages = list(messages)
  # pylint: disable-next=protected-access
  marked = tok._render(messages, False, **kwargs)
  if _OPEN in marked:
    return _marked_spans(marked)
  full = _strip_marks(marked)
  return full, _prefix_spans(tok, messages, full, **kwargs)


def encode_chat(
    tokenizer: ChatTokenizer,
    messages: Sequence[Message],
    max_len: int,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
  """Token ids of a rendered conversation and its assistant-only loss mask.

  A token counts as assistant when its first character lies in an assistant
  span. With prefix rendering a span covers the turn's content and the
  template's end-of-turn text (e.g. `Hello<|im_end|>\\n` in ChatML), so the
  model learns to stop. Special tokens appear as the template writes them
  (e.g. a template's `{{ bos_token }}`); none are added.

  Args:
    tokenizer: a `ChatTokenizer` with a template.
    messages: the conversation.
    max_len: the ids are cut to this length from the right.
    **kwargs: extra template variables.

  Returns:
    (ids int32 [n], loss_mask float32 [n]) with n <= max_len;
    `loss_mask[j] = 1` when token j is an assistant token, i.e. a training
    target (for next-token training use `ids[:-1]` -> `ids[1:]` and
    `loss_mask[1:]`).
  """
  text, spans = chat_spans(tokenizer, messages, **kwargs)
  ids, offsets = tokenizer.encode_with_offsets(text)
  starts = np.asarray([o[0] for o in offsets], np.int64)
  mask = np.zeros(len(ids), np.float32)
  for start, end in spans:
    mask[(starts >= start) & (starts < end)] = 1.0
  ids = np.asarray(ids, np.int32)[:max_len]
  mask = mask[:max_len]
  if not mask[1:].any():
    raise ValueError(
        f'no assistant token to learn within max_len={max_len} '
        f'({len(offsets)} tokens, {len(spans)} assistant turns).'
    )
  return ids, mask


def chat_format(
    tokenizer: ChatTokenizer,
    *,
    prompt_field: str | None = None,
    response_field: str | None = None,
    messages_field: str | None = None,
    system: str | None = None,
) -> _formats.FormatFn:
  """FormatFn rendering a record with the chat template, for the SFT loader.

  Either `prompt_field` + `response_field` (one user turn, one assistant
  turn) or `messages_field` (a conversation ending with an assistant turn;
  only that last turn is trained: use `encode_chat` for every turn).

  The loader adds bos and eos itself, so a bos text that the template writes
  first is dropped from the prompt, and the response ends at the template's
  last eos text (which the loader appends as eos_id).

  Args:
    tokenizer: a `ChatTokenizer` with a template.
    prompt_field: JSON field of the user message.
    response_field: JSON field of the assistant message.
    messages_field: JSON field holding a list of messages.
    system: optional system message put first (prompt/response form).

  Returns:
    `record -> (prompt_text, response_text)`.
  """
  if (messages_field is None) == (prompt_field is None or
                                  response_field is None):
    raise ValueError(
        'chat_format: give messages_field, or prompt_field and '
        'response_field.'
    )
  bos = tokenizer.token_text(tokenizer.bos_id)
  eos = tokenizer.token_text(tokenizer.eos_id)
  if messages_field is None:
    fields = _formats.jsonl_format(prompt_field, response_field)

  def format_fn(record):
    if messages_field is not None:
      messages = _formats.json_fields(record)[messages_field]
    else:
      prompt, response = fields(record)
      messages = [{'role': 'user', 'content': prompt},
                  {'role': 'assistant', 'content': response}]
      if system is not None:
        messages.insert(0, {'role': 'system', 'content': system})
    if not messages or messages[-1]['role'] != 'assistant':
      raise ValueError('the conversation must end with an assistant turn.')
    prompt = tokenizer.render(messages[:-1], add_generation_prompt=True)
    full = tokenizer.render(messages)
    if not full.startswith(prompt):
      raise ValueError('the template rewrites the prompt when the answer is '
                       'added; use encode_chat with {% generation %}.')
    response = full[len(prompt):]
    if bos and prompt.startswith(bos):
      prompt = prompt[len(bos):]
    cut = response.rstrip().rfind(eos) if eos else -1
    if cut >= 0 and not response[cut + len(eos):].strip():
      response = response[:cut]
    return prompt, response

  return format_fn
