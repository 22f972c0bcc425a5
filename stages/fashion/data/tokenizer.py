"""The tiny models' tokenizer: CLIP's byte-level BPE, trained on the train captions.

Shared by the tiny CLIP and the tiny SD text encoder, so neither depends on the other.
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import CLIPTokenizer


def train_caption_tokenizer(captions: Iterable[str], vocab_size: int) -> CLIPTokenizer:
    """CLIP's byte-level BPE tokenizer (normaliser, splitting, specials) trained on captions."""
    return CLIPTokenizer().train_new_from_iterator(captions, vocab_size=vocab_size)
