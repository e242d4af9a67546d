"""Tests for postrain.data tokenizers."""

import json

import pytest
import tokenizers
from tokenizers import models
from tokenizers import pre_tokenizers
from tokenizers import trainers

from postrain import data


def test_char_tokenizer_ids_and_round_trip():
  tok = data.CharTokenizer()
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
  assert tok.vocab_size <= 128
  task = data.ArithmeticTask(operators='+-*')
  for i in range(50):
    ex = task.example(i)
    text = data.format_prompt(ex) + data.format_target(ex)
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert all(4 <= t < tok.vocab_size for t in ids)
    assert tok.decode(ids) == text


def test_char_decode_strips_only_pad():
  tok = data.CharTokenizer()
  ids = [tok.bos_id] + tok.encode('a b\n') + [tok.eos_id, tok.pad_id, 0]
  assert tok.decode(ids) == '<bos>a b\n<eos>'
  assert tok.encode('\u00e9') == [tok.unk_id]
  with pytest.raises(ValueError, match='outside'):
    tok.decode([tok.vocab_size])


def _save_word_level(path, with_config=True):
  vocab = {'<pad>': 0, '<s>': 1, '</s>': 2, '[UNK]': 3, 'hello': 4, 'world': 5}
  tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token='[UNK]'))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.add_special_tokens(['<pad>', '<s>', '</s>'])
  tok.save(str(path / 'tokenizer.json'))
  if with_config:
    config = {
        'bos_token': '<s>',
        'eos_token': {'content': '</s>', 'special': True},
        'pad_token': '<pad>',
    }
    (path / 'tokenizer_config.json').write_text(json.dumps(config))


def test_hf_tokenizer_word_level(tmp_path):
  _save_word_level(tmp_path)
  tok = data.load_tokenizer(str(tmp_path))
  assert isinstance(tok, data.HFTokenizer)
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
  assert tok.vocab_size == 6
  assert tok.encode('hello world') == [4, 5]
  assert tok.decode([1, 4, 5, 2, 0, 0]) == '<s> hello world </s>'
  same = data.load_tokenizer(str(tmp_path / 'tokenizer.json'))
  assert same.encode('world hello') == [5, 4]


def test_hf_tokenizer_without_eos_raises(tmp_path):
  _save_word_level(tmp_path, with_config=False)
  with pytest.raises(ValueError, match='no eos token'):
    data.HFTokenizer(str(tmp_path))
  tok = data.HFTokenizer(str(tmp_path), eos_token='</s>')
  assert tok.bos_id is None and tok.pad_id == tok.eos_id == 2
  with pytest.raises(ValueError, match='not in the tokenizer vocabulary'):
    data.HFTokenizer(str(tmp_path), eos_token='<|end|>')


def test_hf_tokenizer_trained_bpe_round_trip(tmp_path):
  tok = tokenizers.Tokenizer(models.BPE(unk_token='<unk>'))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=300,
      special_tokens=['<pad>', '<bos>', '<eos>', '<unk>'],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
  )
  corpus = ['Compute (3+4)*2.', '3+4=7\n7*2=14', '#### 14'] * 20
  tok.train_from_iterator(corpus, trainer)
  tok.save(str(tmp_path / 'tokenizer.json'))
  tok = data.HFTokenizer(
      str(tmp_path), bos_token='<bos>', eos_token='<eos>', pad_token='<pad>'
  )
  text = 'Compute (4+3)*2.\n#### 14'
  ids = tok.encode(text)
  assert tok.bos_id not in ids and tok.eos_id not in ids
  assert tok.decode(ids + [tok.pad_id]) == text


def test_load_tokenizer_missing_path():
  with pytest.raises(FileNotFoundError, match='neither'):
    data.load_tokenizer('/nonexistent/tok')
