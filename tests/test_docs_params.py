"""Every param the README and docs name exists: in params.yaml or in a profile.

A name is a backticked dotted name whose first part is a section of params.yaml
(`finetune_sd.steps`, `base_sd.tiny.unet_head_dim`, `split.evaluate: validation`), or the key
of a setting in a fenced command (`dvc exp run -S key=value`, `use_profile.py ... "key=value"`).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Old names the docs mention on purpose; the code refuses each with a pointer to its new name.
FORMER = {
    # sd.md's history: "`finetune_sd.max_steps` (now `steps`)"; fashion.core.params_model.RENAMED
    "finetune_sd.max_steps": "steps",
    # evaluation.md: the random hold-out the validation split replaced; params_model.MOVED
    "finetune_clip.val_size": "split.validation_images",
    # redress.md: the inpainting seed before one param seeded every training stage;
    # fashion.core.params.training_section
    "finetune_inpaint.seed": "training.seed",
    # training.md: the names the 2026-12-07 renames replaced (params_model.RENAMED)
    "generate.steps": "generate.denoising_steps",
    "redress.steps": "redress.denoising_steps",
    "prepare.n_train": "prepare.n_train_images",
    "reference.n_eval": "reference.n_images",
    "eval_clip.n": "eval_clip.n_images",
    "redress.n_pairs": "redress.n_images",
    "finetune_clip.keep": "finetune_clip.saved_weights",
}
# Module names whose first part happens to be a section's name.
NOT_PARAMS = {
    # architecture.md: `eda.figures` is the sub-package's module fashion.eda.figures
    "eda.figures": "fashion.eda.figures",
}
FILE_ENDINGS = {"json", "yaml", "yml", "md", "py", "csv", "tsv", "png", "h5", "zip", "mat", "txt"}
DOTTED = re.compile(r"(?<![\w./-])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
SETTING = re.compile(r"""(?:-S\s+|")['"]?([A-Za-z_]\w*(?:\.\w+)+)=""")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def keys(tree: Any, prefix: str = "") -> set[str]:
    """Every dotted path of a nested mapping, inner nodes included."""
    if not isinstance(tree, dict):
        return set()
    out = set()
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out |= {path} | keys(value, path)
    return out


def known_params() -> tuple[set[str], set[str]]:
    """(every dotted param path in params.yaml or a profile, params.yaml's sections)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    known = keys(params)
    for profile in sorted((ROOT / "profiles").glob("*.yaml")):
        known |= keys(yaml.safe_load(profile.read_text()) or {})
    return known, set(params)


def named_params(text: str, sections: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each param a markdown text names."""
    found = []
    for block in FENCE.finditer(text):
        line = text.count("\n", 0, block.start()) + 1
        found += [(line, m.group(1)) for m in SETTING.finditer(block.group(0))]
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for span in re.finditer(r"`([^`\n]+)`", prose):
        line = prose.count("\n", 0, span.start()) + 1
        for m in DOTTED.finditer(span.group(1)):
            name = m.group(1)
            if name.rsplit(".", 1)[1] not in FILE_ENDINGS:
                found.append((line, name))
    return [(line, n) for line, n in found if n.split(".")[0] in sections]


def test_every_named_param_exists() -> None:
    known, sections = known_params()
    missing = [
        f"{doc.relative_to(ROOT)}:{line}: `{name}`"
        for doc in DOCS
        for line, name in named_params(doc.read_text(), sections)
        if name not in known and name not in FORMER and name not in NOT_PARAMS
    ]
    assert not missing, "params named in the docs but in no params file:\n" + "\n".join(missing)


def test_the_allow_lists_are_still_needed() -> None:
    """An allowed name that now exists, or that no doc mentions any more, is dropped."""
    known, sections = known_params()
    named = {n for doc in DOCS for _, n in named_params(doc.read_text(), sections)}
    for name in {**FORMER, **NOT_PARAMS}:
        assert name not in known, f"{name} is a param again: take it off the allow-list"
        assert name in named, f"no doc names {name} any more: take it off the allow-list"


def test_the_parser_finds_names_and_settings() -> None:
    sections = {"finetune_sd", "redress", "base_sd", "training"}
    text = (
        "Set `finetune_sd.steps` or `base_sd.tiny.unet_head_dim: 8`; see `redress.json` and\n"
        "`scripts/use_profile.py`, `fashion.sd.loop`.\n"
        "```bash\ndvc exp run --queue -S 'training.seed=0,1,2'\n"
        'python scripts/use_profile.py profiles/real.yaml "base_sd.revision=<hash>"\n```\n'
    )
    assert sorted(n for _, n in named_params(text, sections)) == [
        "base_sd.revision",
        "base_sd.tiny.unet_head_dim",
        "finetune_sd.steps",
        "training.seed",
    ]
