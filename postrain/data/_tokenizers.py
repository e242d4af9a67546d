"""Tokenizers: a fixed character vocabulary and a wrapper over `tokenizers`.

Both follow one small interface, `Tokenizer`: `encode` never adds special
tokens (the pipeline adds bos/eos itself), `decode` renders every id,
specials included, and drops only padding.
"""

import abc
import json
import os
import string
from typing import Sequence

from absl import logging
import tokenizers


class Tokenizer(abc.ABC):
  """Text <-> ids. Special ids are plain ints; `bos_id` may be None."""

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids; every id is in `[0, vocab_size)`."""

  @property
  @abc.abstractmethod
  def bos_id(self) -> int | None:
    """Beginning-of-sequence id, or None when the vocabulary has none."""

  @property
  @abc.abstractmethod
  def eos_id(self) -> int:
    """End-of-sequence id."""

  @property
  @abc.abstractmethod
  def pad_id(self) -> int:
    """Padding id."""

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Returns the ids of `text`, without bos/eos."""

  @abc.abstractmethod
  def decode(self, ids: Sequence[int]) -> str:
    """Returns the text of `ids`; pad ids are dropped, nothing else is."""


# Specials first so that pad is 0; then a fixed alphabet that covers the
# synthetic tasks and plain English prompts.
_CHAR_SPECIALS = ('<pad>', '<bos>', '<eos>', '<unk>')
_CHAR_ALPHABET = (
    string.digits + string.ascii_letters + string.punctuation + ' \n'
)


class CharTokenizer(Tokenizer):
  """One id per character of a fixed alphabet (100 ids in all).

  Ids: 0 pad, 1 bos, 2 eos, 3 unk, then digits, letters, punctuation, space
  and newline. Characters outside the alphabet map to unk. `decode` renders
  bos/eos/unk as `<bos>`, `<eos>`, `<unk>`.

  >>> tok = CharTokenizer()
  >>> tok.decode(tok.encode('3+4=7'))
  '3+4=7'
  """

  def __init__(self):
    self._id_to_text = list(_CHAR_SPECIALS) + list(_CHAR_ALPHABET)
    self._char_to_id = {
        c: i + len(_CHAR_SPECIALS) for i, c in enumerate(_CHAR_ALPHABET)
    }

  @property
  def vocab_size(self) -> int:
    return len(self._id_to_text)

  @property
  def bos_id(self) -> int:
    return 1

  @property
  def eos_id(self) -> int:
    return 2

  @property
  def pad_id(self) -> int:
    return 0

  @property
  def unk_id(self) -> int:
    return 3

  def encode(self, text: str) -> list[int]:
    return [self._char_to_id.get(c, self.unk_id) for c in text]

  def decode(self, ids: Sequence[int]) -> str:
    out = []
    for i in ids:
      i = int(i)
      if i == self.pad_id:
        continue
      if not 0 <= i < self.vocab_size:
        raise ValueError(
            f'id {i} is outside the char vocabulary [0, {self.vocab_size}).'
        )
      out.append(self._id_to_text[i])
    return ''.join(out)


def _token_content(value) -> str | None:
  """`tokenizer_config.json` writes a token as a string or {'content': s}."""
  if isinstance(value, dict):
    return value.get('content')
  return value


class HFTokenizer(Tokenizer):
  """A Hugging Face `tokenizers` tokenizer read from a local tokenizer.json.

  Special tokens come from the constructor arguments, else from
  `tokenizer_config.json` beside the file (`bos_token`, `eos_token`,
  `pad_token`). eos is required. Without a pad token, pad_id = eos_id
  (logged); padding is always masked, so this changes no loss, but `decode`
  then also drops eos.
  """

  def __init__(
      self,
      path: str,
      *,
      bos_token: str | None = None,
      eos_token: str | None = None,
      pad_token: str | None = None,
  ):
    """Loads the tokenizer.

    Args:
      path: a tokenizer.json file or a directory holding one.
      bos_token: overrides the config's bos token.
      eos_token: overrides the config's eos token.
      pad_token: overrides the config's pad token.
    """
    file = os.path.join(path, 'tokenizer.json') if os.path.isdir(path) else path
    if not os.path.isfile(file):
      raise FileNotFoundError(f'No tokenizer.json at {file!r}.')
    self._tok = tokenizers.Tokenizer.from_file(file)
    config = {}
    config_file = os.path.join(os.path.dirname(file), 'tokenizer_config.json')
    if os.path.isfile(config_file):
      with open(config_file) as f:
        config = json.load(f)
    self._bos_id = self._lookup(bos_token or config.get('bos_token'), 'bos')
    self._eos_id = self._lookup(eos_token or config.get('eos_token'), 'eos')
    if self._eos_id is None:
      raise ValueError(
          f'Tokenizer {file!r} has no eos token: set eos_token in '
          f'{config_file!r} or pass eos_token=.'
      )
    self._pad_id = self._lookup(pad_token or config.get('pad_token'), 'pad')
    if self._pad_id is None:
      logging.info('Tokenizer %s has no pad token; using eos as pad.', file)
      self._pad_id = self._eos_id

  def _lookup(self, token, role: str) -> int | None:
    content = _token_content(token)
    if content is None:
      return None
    token_id = self._tok.token_to_id(content)
    if token_id is None:
      raise ValueError(
          f'{role} token {content!r} is not in the tokenizer vocabulary.'
      )
    return token_id

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def bos_id(self) -> int | None:
    return self._bos_id

  @property
  def eos_id(self) -> int:
    return self._eos_id

  @property
  def pad_id(self) -> int:
    return self._pad_id

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Sequence[int]) -> str:
    kept = [int(i) for i in ids if int(i) != self._pad_id]
    return self._tok.decode(kept, skip_special_tokens=False)


def load_tokenizer(spec: str) -> Tokenizer:
  """Returns `CharTokenizer()` for `'char'`, else an `HFTokenizer(spec)`.

  Args:
    spec: `'char'`, or a local directory holding tokenizer.json, or the path
      of a tokenizer.json file.
  """
  if spec == 'char':
    return CharTokenizer()
  if not os.path.exists(spec):
    raise FileNotFoundError(
        f"Tokenizer spec {spec!r} is neither 'char' nor an existing path."
    )
  return HFTokenizer(spec)
