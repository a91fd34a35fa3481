"""The toy world's CLIP tokenizer in plain python: the byte-pair encoding of the shipped `tokenizer.json` as the
`tokenizers` library applies it to the prompts the toy vocabulary accepts, without importing transformers.

The toy vocabulary is lower-case ASCII words and commas (`models.write_tokenizer`): its merges spell every world
word whole and anything else falls back to letters. The pipeline is CLIP's: NFC, runs of whitespace to one space,
lower case; words, digits and runs of punctuation as pieces; each piece merged by rank with `</w>` on its last
symbol; `<|startoftext|>` … `<|endoftext|>` around, truncated to the model's length. Non-ASCII text (which CLIP's
byte-level step would remap) is outside what this reproduces and what the toy models know.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import torch
from torch import Tensor

#: CLIP's pre-tokenizer: special tokens, English contractions, runs of letters, single digits, runs of the rest.
PIECES = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:_|[^\s\w])+")


class ToyTokenizer:
    def __init__(self, vocab: dict[str, int], merges: list[str], max_length: int, special: dict[str, str]) -> None:
        """special: the tokens of `bos_token`, `eos_token`, `pad_token` and `unk_token`."""
        self.vocab, self.max_length = vocab, max_length
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.bos, self.eos = vocab[special["bos_token"]], vocab[special["eos_token"]]
        self.pad, self.unk = vocab[special["pad_token"]], vocab[special["unk_token"]]

    @classmethod
    def from_folder(cls, folder: Path) -> ToyTokenizer:
        """A tokenizer folder as transformers saves it (`tokenizer.json`, `tokenizer_config.json`)."""
        model = json.loads((folder / "tokenizer.json").read_text())["model"]
        config = json.loads((folder / "tokenizer_config.json").read_text())
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        return cls(model["vocab"], merges, int(config["model_max_length"]), config)

    def __call__(self, texts: list[str], pad_to_max: bool = True) -> tuple[Tensor, Tensor]:
        """(ids [B, L], attention mask [B, L]): padded to `max_length`, or (pad_to_max=False) to the longest text,
        as transformers' `padding="max_length"` or `padding=True` with `truncation=True`."""
        rows = [self.encode(t) for t in texts]
        length = self.max_length if pad_to_max else max(map(len, rows))
        ids = torch.tensor([r + [self.pad] * (length - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], dtype=torch.long)
        return ids, mask

    def encode(self, text: str) -> list[int]:
        """One text's ids, with start and end tokens, at most `max_length`."""
        text = re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).lower()
        ids = [i for piece in PIECES.findall(text) for i in self.bpe(piece)]
        return [self.bos, *ids[: self.max_length - 2], self.eos]

    def bpe(self, piece: str) -> list[int]:
        """The ids of one piece: its letters merged pair by pair, lowest merge rank first."""
        symbols = [*piece[:-1], piece[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = [(self.ranks.get(pair, len(self.ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
            rank, i = min(pairs)
            if rank == len(self.ranks):
                break
            symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
        return [self.vocab.get(s, self.unk) for s in symbols]
