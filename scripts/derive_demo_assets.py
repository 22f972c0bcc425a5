"""Derive the demo benchmark's statistics from the real `language_original.mat`.

Usage: python scripts/derive_demo_assets.py ANNOTATION_DIR [--out DIR]

Writes aggregate statistics (no rows, no caption list) into `stages/fashion/demo/assets/`
(or `--out`):
  joint_counts.csv      gender,color,sleeve,category,count: the joint distribution of the codes
  caption_patterns.csv  sleeve,pattern,count: sentence patterns over {gender} {color} {sleeve}
                        {category}, per sleeve code, the most frequent ones covering the bulk
  caption_words.csv     field,code,word,count: the words a caption uses for a code
                        (e.g. lady / woman for gender 0; multicolor / multi-colored for 17)
  vocabulary.csv        id,word: the `codeJ` word ids, aligned with the captions' words
  folder_names.json     `nameList` patterns: descriptor words per folder, images per folder,
                        steps between image numbers, and the most frequent descriptor words
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import scipy.io

from fashion.data.attributes import ATTRIBUTES, CATEGORY, COLOR, SLEEVE
from fashion.demo.captions import COLOR_VARIANTS, GENDER_VARIANTS, codej_words

ASSETS = Path(__file__).resolve().parents[1] / "stages" / "fashion" / "demo" / "assets"
COVERAGE = 0.9  # keep the most frequent patterns until they cover this share of the rows
MIN_COUNT = 5  # ... but no pattern seen fewer times
MAX_FOLDER_WORDS = 400


def caption_pattern(caption: str, gender: int, color: int, sleeve: int, category: int):
    """The caption with the words naming its own codes replaced by placeholders.

    Returns (pattern, {field: word used}) or None when the caption does not name its
    gender, category and colour in place (those rows are left out of the patterns).
    """
    words = caption.split(" ")
    used: dict[str, str] = {}
    for i, word in enumerate(words):
        core = word.rstrip(".,")
        tail = word[len(core) :]
        if i == 1 and core in GENDER_VARIANTS[gender] and "gender" not in used:
            field = "gender"
        elif core == CATEGORY[category] and "category" not in used:
            field = "category"
        elif core in COLOR_VARIANTS.get(COLOR[color], (COLOR[color],)) and "color" not in used:
            field = "color"
        elif core == SLEEVE[sleeve] and "sleeve" not in used:
            field = "sleeve"
        else:
            continue
        used[field] = core
        words[i] = "{" + field + "}" + tail
    pattern = " ".join(words).replace(" an {", " a {")
    if not {"gender", "category", "color"} <= used.keys():
        return None
    # a pattern that still names a colour, category or gender word would lie when reused
    leftover = set(codej_words(pattern)) - {"{" + p + "}" for p in ATTRIBUTES}
    named = {*COLOR.values(), *CATEGORY.values()}
    named |= {w for ws in GENDER_VARIANTS.values() for w in ws}
    named |= {w for ws in COLOR_VARIANTS.values() for w in ws}
    if leftover & named:
        return None
    return pattern, used


def derive(annotation_dir: Path, out: Path = ASSETS) -> None:
    """Write the five asset files of `language_original.mat` in `annotation_dir` into `out`."""
    mat = scipy.io.loadmat(annotation_dir / "language_original.mat")
    captions = [str(c[0]) for c in mat["engJ"][:, 0]]
    names = [str(c[0]) for c in mat["nameList"][:, 0]]
    word_ids = [np.asarray(c).ravel() for c in mat["codeJ"][:, 0]]
    codes = np.stack(
        [mat[k][:, 0].astype(int) for k in ("gender_", "color_", "sleeve_", "cate_new")]
    )
    n = len(captions)
    out.mkdir(parents=True, exist_ok=True)

    joint = Counter(map(tuple, codes.T.tolist()))
    with open(out / "joint_counts.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["gender", "color", "sleeve", "category", "count"])
        w.writerows([*key, count] for key, count in sorted(joint.items()))

    patterns: dict[int, Counter] = defaultdict(Counter)
    words: Counter = Counter()
    for caption, (g, c, s, k) in zip(captions, codes.T.tolist(), strict=True):
        found = caption_pattern(caption, g, c, s, k)
        if found is None:
            continue
        pattern, used = found
        patterns[s][pattern] += 1
        words["gender", g, used["gender"]] += 1
        words["color", c, used["color"]] += 1
    # per sleeve code, the most frequent patterns until they cover the bulk of its rows
    sleeve_rows = Counter(codes[2].tolist())
    kept, covered = [], 0
    for s, counts in sorted(patterns.items()):
        share = 0
        for pattern, count in counts.most_common():
            if (
                kept
                and kept[-1][0] == s
                and (share >= COVERAGE * sleeve_rows[s] or count < MIN_COUNT)
            ):
                break
            kept.append((s, pattern, count))
            share += count
        covered += share
    with open(out / "caption_patterns.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sleeve", "pattern", "count"])
        w.writerows(sorted(kept, key=lambda r: (r[0], -r[2], r[1])))
    with open(out / "caption_words.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["field", "code", "word", "count"])
        w.writerows([*key, count] for key, count in sorted(words.items()))
    print(f"caption patterns: {len(kept)} cover {covered / n:.1%} of {n} rows")

    # codeJ ids by alignment of the captions' words (majority vote over the rows).
    votes: dict[str, Counter] = defaultdict(Counter)
    aligned = 0
    for caption, ids in zip(captions, word_ids, strict=True):
        tokens = codej_words(caption)
        if len(tokens) == len(ids):
            aligned += 1
            for token, i in zip(tokens, ids.tolist(), strict=True):
                votes[token][i] += 1
    vocab = sorted((v.most_common(1)[0][0], word) for word, v in votes.items())
    with open(out / "vocabulary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "word"])
        w.writerows(vocab)
    print(f"vocabulary: {len(vocab)} words, {aligned / n:.2%} of captions aligned with codeJ")

    folders = [name.split("/")[1] for name in names]
    numbers = [int(name.rsplit("_", 1)[1].split(".")[0]) for name in names]
    sizes, steps, descriptor = Counter(), Counter(), Counter()
    lengths: Counter = Counter()
    start = 0
    for i in range(1, n + 1):
        if i == n or folders[i] != folders[start]:
            sizes[i - start] += 1
            parts = folders[start].split("_")[:-1]
            lengths[len(parts)] += 1
            descriptor.update(parts)
            steps.update(np.diff(numbers[start:i]).tolist())
            start = i
    stats = {
        "pattern": "img/<Descriptor_Words_Category>/img_XXXXXXXX.jpg",
        "descriptor_words_per_folder": {str(k): v for k, v in sorted(lengths.items())},
        "images_per_folder": {str(k): v for k, v in sorted(sizes.items())},
        "number_steps": {str(k): v for k, v in sorted(steps.items()) if k > 0},
        "descriptor_words": dict(descriptor.most_common(MAX_FOLDER_WORDS)),
    }
    (out / "folder_names.json").write_text(json.dumps(stats, indent=1) + "\n")
    print(f"folder names: {sum(sizes.values())} folders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotation_dir", type=Path, help="the folder of language_original.mat")
    parser.add_argument("--out", type=Path, default=ASSETS, help="default: the demo's assets/")
    args = parser.parse_args()
    if not (args.annotation_dir / "language_original.mat").is_file():
        parser.error(f"{args.annotation_dir}: no language_original.mat")
    derive(args.annotation_dir, args.out)


if __name__ == "__main__":
    main()
