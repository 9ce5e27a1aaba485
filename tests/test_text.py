"""The CLIP tokenizer on the demo vocabulary, and the vocabulary's layout."""

import gzip
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from vidstyleode_jax import text

TEXTS = [
    "A person with long sleeves",
    "a red dress   and a blue shirt",
    "the woman turns around, smiling",
]
KNOWN_WORDS = " ".join(TEXTS).replace(",", " ").lower().split()


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("vocab"))
  size = text.write_vocabulary_of(folder, TEXTS)
  with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
    return folder, size, json.load(f)


@pytest.fixture(scope="module")
def tokenizer(vocabulary):
  return text.ClipTokenizer(vocabulary[0], context_length=12)


def test_vocabulary_layout(vocabulary):
  _, size, entries = vocabulary
  ids = sorted(entries.values())
  assert ids == list(range(size))
  symbols = list(text.byte_to_symbol().values())
  assert len(set(symbols)) == 256
  by_id = sorted(entries, key=entries.get)
  assert by_id[:256] == symbols
  assert by_id[256:512] == [s + "</w>" for s in symbols]
  assert by_id[0] == "!"
  assert by_id[-2:] == ["<|startoftext|>", "<|endoftext|>"]


def test_byte_symbols_are_printable_stand_ins():
  symbols = text.byte_to_symbol()
  assert symbols[ord("a")] == "a"
  assert symbols[ord(" ")] == "Ġ"
  assert symbols[0] == chr(256)
  assert all(not s.isspace() for s in symbols.values())


def test_known_words_are_single_tokens(vocabulary, tokenizer):
  _, _, entries = vocabulary
  for word in KNOWN_WORDS:
    ids = tokenizer(word)[0]
    np.testing.assert_array_equal(
        ids[:3], [tokenizer.sot_id, entries[word + "</w>"], tokenizer.eot_id], err_msg=word
    )


def test_rows_are_sot_ids_eot_then_zero_padding(tokenizer):
  ids = tokenizer(["a red dress", ""])
  assert ids.dtype == np.int32 and ids.shape == (2, 12)
  assert ids[0, 0] == tokenizer.sot_id and ids[0, 4] == tokenizer.eot_id
  np.testing.assert_array_equal(ids[0, 5:], 0)
  np.testing.assert_array_equal(ids[1, :2], [tokenizer.sot_id, tokenizer.eot_id])
  np.testing.assert_array_equal(ids[1, 2:], 0)
  assert tokenizer.eot_id == tokenizer.vocab_size - 1
  np.testing.assert_array_equal(np.argmax(ids, axis=1), [4, 1])


@pytest.mark.parametrize("sentence", TEXTS[:2] + ["the red sleeves"])
def test_decode_round_trip(tokenizer, sentence):
  assert tokenizer.decode(tokenizer(sentence)[0]) == " ".join(sentence.lower().split())


def test_unknown_word_falls_back_to_byte_symbols(vocabulary, tokenizer):
  """'zq' has no merges: byte symbol 'z' (id ord('z') - 33) then 'q</w>' (256 + ord('q') - 33)."""
  _, _, entries = vocabulary
  assert "zq</w>" not in entries
  ids = tokenizer("zq")[0]
  np.testing.assert_array_equal(ids[:4], [tokenizer.sot_id, ord("z") - 33, 256 + ord("q") - 33, tokenizer.eot_id])
  assert tokenizer.decode(tokenizer("zebra café")[0]) == "zebra café"


def test_too_long_text_raises(tokenizer):
  words = "a " * 11
  with pytest.raises(ValueError, match=r"has 13 tokens .* context length 12"):
    tokenizer(words)
  assert tokenizer("a " * 10)[0, -1] == tokenizer.eot_id


def test_vocabulary_without_eot_last_is_rejected(vocabulary, tmp_path):
  folder, _, entries = vocabulary
  reordered = dict(entries)
  reordered["<|endoftext|>"], reordered["<|startoftext|>"] = entries["<|startoftext|>"], entries["<|endoftext|>"]
  (tmp_path / "vocab.json").write_text(json.dumps(reordered, ensure_ascii=False), encoding="utf-8")
  (tmp_path / "merges.txt").write_text(open(os.path.join(folder, "merges.txt"), encoding="utf-8").read())
  with pytest.raises(ValueError, match="largest"):
    text.ClipTokenizer(str(tmp_path))


def test_convert_openai_bpe_layout(tmp_path):
  """Header line skipped, merges in file order after the 512 byte symbols, then SOT and EOT."""
  bpe_path = tmp_path / "bpe.txt.gz"
  with gzip.open(bpe_path, "wt", encoding="utf-8") as f:
    f.write("\n".join(["bpe header", "h e", "l l", "he ll", "hell o</w>"]) + "\n")
  size = text.convert_openai_bpe(str(bpe_path), str(tmp_path / "vocab"))
  assert size == 512 + 4 + 2
  tokenizer = text.ClipTokenizer(str(tmp_path / "vocab"))
  np.testing.assert_array_equal(tokenizer("Hello")[0, :3], [516, 515, 517])


# The wheel ships OpenAI's BPE file; it is downloaded, never installed (it needs torchvision).
OPEN_CLIP_WHEEL = "open_clip_torch==3.3.0"


@pytest.fixture(scope="module")
def openai_bpe(tmp_path_factory):
  """OpenAI's bpe_simple_vocab_16e6.txt.gz, taken from the open-clip-torch wheel on the package registry."""
  folder = tmp_path_factory.mktemp("open_clip")
  subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), OPEN_CLIP_WHEEL],
                 check=True)
  with zipfile.ZipFile(next(folder.glob("*.whl"))) as wheel:
    (folder / "bpe.txt.gz").write_bytes(wheel.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
  return str(folder / "bpe.txt.gz")


def test_golden_ids_with_real_vocabulary(openai_bpe, tmp_path):
  """Ids of OpenAI's own tokenizer (clip.tokenize) for two sentences."""
  assert text.convert_openai_bpe(openai_bpe, str(tmp_path)) == 49408
  tokenizer = text.ClipTokenizer(str(tmp_path))
  ids = tokenizer(["hello world", "a photo of a person with long sleeves"])
  np.testing.assert_array_equal(ids[0, :5], [49406, 3306, 1002, 49407, 0])
  np.testing.assert_array_equal(ids[1, :11], [49406, 320, 1125, 539, 320, 2533, 593, 1538, 19691, 49407, 0])
