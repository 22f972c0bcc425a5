"""The README as a new user meets it: short, and its first screen shows a picture of the
results, the two commands and what a run gives."""

from __future__ import annotations

import re

from conftest import ROOT

README = ROOT / "README.md"
MAX_LINES = 250
FIRST_SCREEN = 40  # lines


def test_the_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines (at most {MAX_LINES})"


def test_the_first_screen_shows_a_picture_the_two_commands_and_what_you_get() -> None:
    first = "\n".join(README.read_text().splitlines()[:FIRST_SCREEN])
    pictures = re.findall(r"!\[[^\]]+\]\((docs/img/[^)]+\.png)\)", first)
    assert pictures, "no picture from docs/img on the README's first screen"
    assert all((ROOT / p).is_file() for p in pictures), pictures
    assert re.search(r"^make demo\b", first, re.M) and re.search(r"^make test\b", first, re.M)
    assert "## What you get" in first
