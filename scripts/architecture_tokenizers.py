"""Write the tokenizers of the shipped random-weight architectures (`dreamfusion/priors/architectures/`).

The real vocabularies (SD 2.1's CLIP BPE, IF's T5 sentencepiece model) cannot be had offline, and random weights
make which ids a prompt gets irrelevant: what matters for speed and memory is the token count (77) and ids inside
the text encoder's vocabulary. So both are character-level tokenizers over printable ASCII, written in the files
the real checkpoints ship (`tokenizer.json` + config), and loaded by the adapters with the same `from_pretrained`
call. Run once; the output is committed:

    python scripts/architecture_tokenizers.py
"""

from __future__ import annotations

import string
from pathlib import Path

from transformers import CLIPTokenizer, T5Tokenizer

ARCHITECTURES = Path(__file__).resolve().parents[1] / "dreamfusion" / "priors" / "architectures"
CHARACTERS = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation
#: Both priors were trained on 77 tokens.
MAX_LENGTH = 77


def clip_tokenizer(path: Path) -> None:
    """Byte-pair encoding with no merges: every character is a token, word-final ones marked `</w>` as in CLIP."""
    tokens = ["<|startoftext|>", "<|endoftext|>", *CHARACTERS, *(c + "</w>" for c in CHARACTERS)]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(path)


def t5_tokenizer(path: Path) -> None:
    """A unigram model over characters, word starts marked `▁` as in T5's sentencepiece vocabulary."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{c}", -3.0) for c in CHARACTERS] + [(c, -5.0) for c in CHARACTERS]
    T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=MAX_LENGTH).save_pretrained(path)


if __name__ == "__main__":
    clip_tokenizer(ARCHITECTURES / "sd-2.1-base" / "tokenizer")
    t5_tokenizer(ARCHITECTURES / "if-i-xl" / "tokenizer")
