"""The tiny models' tokenizer gives the same ids in every process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fashion.data.tokenizer import train_caption_tokenizer
from subset_writer import make_rows

TESTS = Path(__file__).parent
# Prints the trained vocabulary, ids included, as sorted JSON.
TRAIN = """
import json, sys
from subset_writer import make_rows
from fashion.data.tokenizer import train_caption_tokenizer
captions = [r["caption"] for r in make_rows(200, seed=0)]
print(json.dumps(train_caption_tokenizer(captions, 200).get_vocab(), sort_keys=True))
"""


def test_ids_do_not_depend_on_the_process() -> None:
    # the trainer's order of end-of-word characters follows a hash seeded per process
    vocabularies = {
        subprocess.run(
            [sys.executable, "-c", TRAIN], capture_output=True, text=True, check=True, cwd=TESTS
        ).stdout
        for _ in range(3)
    }
    assert len(vocabularies) == 1


def test_renumbering_keeps_the_tokens() -> None:
    from transformers import CLIPTokenizer

    captions = [r["caption"] for r in make_rows(100, seed=1)]
    ours = train_caption_tokenizer(captions, 200)
    trained = CLIPTokenizer().train_new_from_iterator(captions, vocab_size=200)
    assert ours.get_vocab().keys() == trained.get_vocab().keys()
    for text in [*captions[:20], "an unseen Sentence, with 'quotes' and digits 42."]:
        tokens = ours.convert_ids_to_tokens(ours(text)["input_ids"])
        assert tokens == trained.convert_ids_to_tokens(trained(text)["input_ids"])
