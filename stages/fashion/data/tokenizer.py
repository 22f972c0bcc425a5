"""The tiny models' tokenizer: CLIP's byte-level BPE, trained on the train captions.

Shared by the tiny CLIP and the tiny SD text encoder, so neither depends on the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from transformers import CLIPTokenizer

_END_OF_WORD_CHARACTER = re.compile(r".</w>", re.S)  # "e</w>": a word's last character


def train_caption_tokenizer(captions: Iterable[str], vocab_size: int) -> CLIPTokenizer:
    """CLIP's byte-level BPE tokenizer (normaliser, splitting, specials) trained on captions.

    The same captions give the same ids in every process: the trainer numbers the
    end-of-word characters ("e</w>", "y</w>", ...) in hash order, which changes from one
    Python process to the next (huggingface/tokenizers#1794), so they are renumbered here in
    sorted order, within the ids the trainer gave them. Merges come out in a fixed order.
    """
    trained = CLIPTokenizer().train_new_from_iterator(captions, vocab_size=vocab_size)
    model = json.loads(trained.backend_tokenizer.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    ends = sorted(t for t in vocab if _END_OF_WORD_CHARACTER.fullmatch(t))
    vocab.update(zip(ends, sorted(vocab[t] for t in ends), strict=True))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges)
