"""CLIP tokenization with OpenAI's id layout, and the CLIP BPE vocabulary folders it reads.

A vocabulary folder holds `vocab.json` and `merges.txt` in the layout of docs/weight_formats.md §4.5: the 256 byte
symbols, the same with `</w>`, one entry per merge, then `<|startoftext|>` and `<|endoftext|>` as the two largest ids.
`convert_openai_bpe` turns OpenAI's merge file into the real one (`python -m port_weights clip ... --bpe` stores it in
the ported CLIP folder); `write_vocabulary_of` makes a small but genuine vocabulary in which every word of some
texts is one token, for runs whose CLIP is drawn at random (the demo).

Which folder a run reads (`tokenizer_folder`) follows from its config alone, so that training, the applications and
evaluation all find the same one: config.clip.tokenizer if set, else the ported CLIP folder config.clip.checkpoint,
else (random CLIP) the vocabulary that training builds from its dataset's descriptions in WORKDIR/tokenizer.
"""

import collections
import gzip
import json
import os
import unicodedata
from typing import Sequence

import numpy as np
import regex
import transformers

from vidstyleode_jax import files
from vidstyleode_jax.errors import UserError

TOKENIZER_FILES = ("vocab.json", "merges.txt")
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
END_OF_WORD = "</w>"
CLIP_CONTEXT_LENGTH = 77
OPENAI_MERGE_COUNT = 48894

_PRE_TOKENIZER = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


class ClipTokenizer:
  """transformers' `CLIPTokenizer` on a vocabulary folder, producing OpenAI `clip.tokenize` id arrays.

  Rows are [SOT] + ids + [EOT], zero-padded to `context_length` as OpenAI does (Hugging Face pads with EOT; the text
  tower pools the first EOT either way). Text cleaning is transformers' (NFC, collapse whitespace, lowercase); OpenAI
  additionally runs ftfy and HTML unescaping, which only matters for unusual text.
  """

  def __init__(self, folder: str, context_length: int = CLIP_CONTEXT_LENGTH):
    check_folder(folder)
    self._tokenizer = transformers.CLIPTokenizer.from_pretrained(folder)
    self.context_length = context_length
    self.sot_id = self._tokenizer.convert_tokens_to_ids(START_OF_TEXT)
    self.eot_id = self._tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    if self.eot_id != self.vocab_size - 1:
      raise UserError(
          f"{folder}: {END_OF_TEXT} has id {self.eot_id}, but CLIP pools argmax(ids) and needs it to be the largest "
          f"id {self.vocab_size - 1}"
      )

  @property
  def vocab_size(self) -> int:
    return len(self._tokenizer)

  def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
    """texts -> [len(texts), context_length] int32; a single string gives one row.

    Raises:
      UserError: a text needs more than context_length tokens (start and end included); nothing is truncated.
    """
    if isinstance(texts, str):
      texts = [texts]
    ids = np.zeros((len(texts), self.context_length), np.int32)
    for row, text in enumerate(texts):
      tokens = self.token_ids(text)
      if len(tokens) > self.context_length:
        raise UserError(f"text {text!r} has {len(tokens)} tokens (start and end included), more than the CLIP "
                        f"context length {self.context_length}")
      ids[row, :len(tokens)] = tokens
    return ids

  def token_ids(self, text: str) -> list[int]:
    """[SOT] + the ids of `text` + [EOT], however long."""
    return [self.sot_id, *self._tokenizer.encode(text, add_special_tokens=False), self.eot_id]

  def decode(self, ids: Sequence[int]) -> str:
    """One row of ids -> text, reading up to the first EOT; words are separated by single spaces."""
    ids = [int(i) for i in ids]
    if self.eot_id in ids:
      ids = ids[:ids.index(self.eot_id)]
    return self._tokenizer.decode([i for i in ids if i != self.sot_id]).strip()


def byte_to_symbol() -> dict[int, str]:
  """byte -> its byte-level BPE symbol, in vocabulary order.

  Printable Latin-1 bytes stand for themselves and come first, in byte order; then every other byte, in byte order,
  as chr(256 + n) for the n-th of them.
  """
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  others = [byte for byte in range(256) if byte not in printable]
  return {**{byte: chr(byte) for byte in printable}, **{byte: chr(256 + n) for n, byte in enumerate(others)}}


def words(texts: Sequence[str]) -> list[str]:
  """CLIP's pre-tokenisation after transformers' cleaning (NFC, one space, lowercase); special tokens dropped."""
  words = []
  for text in texts:
    cleaned = " ".join(unicodedata.normalize("NFC", text).split()).lower()
    words += [w for w in _PRE_TOKENIZER.findall(cleaned) if w not in (START_OF_TEXT, END_OF_TEXT)]
  return words


def _learn_merges(words: Sequence[str]) -> list[tuple[str, str]]:
  """Greedy BPE: merge the most frequent adjacent pair everywhere until every word is a single symbol."""
  symbols = byte_to_symbol()
  counts = collections.Counter(words)
  segmented = {}
  for word in counts:
    pieces = [symbols[byte] for byte in word.encode("utf-8")]
    pieces[-1] += END_OF_WORD
    segmented[word] = pieces
  merges = []
  while True:
    pair_counts = collections.Counter()
    for word, pieces in segmented.items():
      for pair in zip(pieces, pieces[1:]):
        pair_counts[pair] += counts[word]
    if not pair_counts:
      return merges
    best = max(pair_counts, key=pair_counts.get)
    merges.append(best)
    for word, pieces in segmented.items():
      merged = []
      for piece in pieces:
        if merged and (merged[-1], piece) == best:
          merged[-1] += piece
        else:
          merged.append(piece)
      segmented[word] = merged


def _write_vocabulary(folder: str, merges: Sequence[tuple[str, str]]) -> int:
  """vocab.json (bytes, bytes + </w>, merged strings, SOT, EOT) and merges.txt; returns the vocabulary size."""
  base = list(byte_to_symbol().values())
  entries = base + [symbol + END_OF_WORD for symbol in base]
  entries += [left + right for left, right in merges]
  entries += [START_OF_TEXT, END_OF_TEXT]
  vocabulary = {}
  for entry in entries:
    vocabulary.setdefault(entry, len(vocabulary))
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, TOKENIZER_FILES[0]), "w", encoding="utf-8") as f:
    json.dump(vocabulary, f, ensure_ascii=False)
  with open(os.path.join(folder, TOKENIZER_FILES[1]), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n")
    f.writelines(f"{left} {right}\n" for left, right in merges)
  return len(vocabulary)


def write_vocabulary_of(folder: str, texts: Sequence[str]) -> int:
  """Writes a small CLIP-format BPE vocabulary in which every word of `texts` is a single token.

  Other words still tokenize, byte by byte. The folder loads with `ClipTokenizer` (and transformers'
  `CLIPTokenizer`).

  Args:
    folder: created if missing; receives vocab.json and merges.txt.
    texts: the sentences whose words become tokens.

  Returns:
    The vocabulary size (the text tower's vocab_size); EOT is its last id.
  """
  return _write_vocabulary(folder, _learn_merges(words(texts)))


def check_folder(folder: str) -> None:
  """Raises UserError unless `folder` holds a vocabulary (vocab.json and merges.txt)."""
  missing = [name for name in TOKENIZER_FILES if not os.path.isfile(os.path.join(folder, name))]
  if missing:
    raise UserError(f"no CLIP tokenizer in {folder} ({' and '.join(missing)} missing): port CLIP with --bpe "
                    "(python -m port_weights clip SRC DST --bpe bpe_simple_vocab_16e6.txt.gz) or set clip.tokenizer "
                    "to a folder holding vocab.json and merges.txt")


def builds_vocabulary(config) -> bool:
  """Whether training builds the run's vocabulary (a random CLIP with no tokenizer named: the demo)."""
  return not config.clip.tokenizer and not config.clip.checkpoint


def tokenizer_folder(config, workdir: str) -> str:
  """The folder of the run's CLIP vocabulary: clip.tokenizer, else the ported CLIP, else WORKDIR/tokenizer."""
  if builds_vocabulary(config):
    return os.path.join(workdir, files.TOKENIZER_DIR)
  return config.clip.tokenizer or config.clip.checkpoint


def built_token_count(text: str) -> int:
  """Tokens (start and end included) of `text` under a vocabulary built from it: one per word."""
  return len(words([text])) + 2


def load_tokenizer(config, workdir: str) -> ClipTokenizer:
  """The run's tokenizer (see `tokenizer_folder`); UserError if the folder lacks the files or has too many ids."""
  folder = tokenizer_folder(config, workdir)
  tokenizer = ClipTokenizer(folder, config.clip.context_length)
  if tokenizer.vocab_size > config.clip.vocab_size:
    raise UserError(f"the tokenizer in {folder} has {tokenizer.vocab_size} ids, more than clip.vocab_size="
                    f"{config.clip.vocab_size} of the CLIP text tower")
  return tokenizer


def convert_openai_bpe(bpe_path: str, folder: str) -> int:
  """OpenAI's `bpe_simple_vocab_16e6.txt.gz` (shipped in the open-clip-torch wheel) -> a vocabulary folder.

  Uses the header-less merge lines 1 ... 48894, as OpenAI's tokenizer does. Returns the vocabulary size, 49408.
  """
  with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
    lines = f.read().splitlines()[1:OPENAI_MERGE_COUNT + 1]
  return _write_vocabulary(folder, [tuple(line.split()) for line in lines])
