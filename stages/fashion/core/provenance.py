"""Where a base model comes from: a saved tiny model, a local directory or a hub id.

A `base_*` stage writes `source.json` into its output folder; later stages call
`read_source` and pass the result to `from_pretrained`, so tiny and real models
go through the same loading code.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from fashion.core.stage import PipelineError

SOURCE_FILE = "source.json"


def write_source(out_dir: Path, pretrained: str, revision: str | None = None) -> None:
    """Record the model to load: `pretrained` is a hub id or a path (relative to the repo)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SOURCE_FILE).write_text(
        json.dumps({"pretrained": pretrained, "revision": revision}, indent=2) + "\n"
    )


def resolve_revision(pretrained: str, revision: str | None, param: str) -> str | None:
    """The commit hash a hub id at `revision` (a branch, tag, hash or None: main) points to now.

    Later stages load that hash, never a moving branch, so `dvc.lock` records which commit
    every stage used and a LoRA is fused onto the commit it was trained on. A local folder
    keeps `revision` as given. Offline, the hub cache's record of the branch is used.
    """
    if Path(pretrained).is_dir() or (revision and re.fullmatch(r"[0-9a-f]{40}", revision)):
        return revision
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(pretrained, revision=revision).sha
    except Exception as err:  # the HTTP client's errors differ between huggingface_hub versions
        cached = cached_commit(pretrained, revision or "main")
        if cached is not None:
            print(f"{pretrained}: hub unreachable, using the cached commit {cached} ({err})")
            return cached
        raise PipelineError(
            f"params.yaml: {param} {pretrained!r}: cannot resolve revision "
            f"{revision or 'main'!r} to a commit, and no cached copy ({err})"
        ) from err


def cached_commit(repo_id: str, revision: str) -> str | None:
    """The commit the local hub cache recorded for `repo_id` at branch or tag `revision`."""
    from huggingface_hub.constants import HF_HUB_CACHE

    ref = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def read_source(model_dir: str | Path) -> tuple[str, str | None]:
    """(`pretrained_model_name_or_path`, `revision`) recorded by a base stage."""
    path = Path(model_dir) / SOURCE_FILE
    if not path.is_file():
        raise PipelineError(f"{path}: model source not found (run the base model stage)")
    try:
        source = json.loads(path.read_text())
        return source["pretrained"], source.get("revision")
    except (json.JSONDecodeError, KeyError) as err:
        raise PipelineError(f"{path}: malformed model source ({err})") from err


def hash_files(digest: Any, root: Path, prefix: str = "", end: str = "") -> None:
    """Feed `digest` (a hashlib object) the file `root`, or every file under it in sorted
    order: each one's path relative to `root` ("" for `root` itself), between `prefix` and
    `end`, then its contents, a block at a time."""
    files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
    for f in files:
        digest.update(f"{prefix}{f.relative_to(root) if f != root else ''}{end}".encode())
        with f.open("rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)


def training_fingerprint(
    pretrained: str, revision: str | None, captions: list[str], images: np.ndarray
) -> str:
    """What a training run starts from: the base model (its files, when a local folder) and
    the training data. A checkpoint with another fingerprint must not be resumed: a re-drawn
    demo or a re-trained tiny base would otherwise continue someone else's training."""
    h = hashlib.blake2b(f"{pretrained}@{revision}".encode(), digest_size=20)
    if Path(pretrained).is_dir():
        hash_files(h, Path(pretrained))
    h.update("\n".join(captions).encode())
    for start in range(0, len(images), 4096):  # a chunk at a time: no copy of all the images
        h.update(np.ascontiguousarray(images[start : start + 4096]).tobytes())
    return h.hexdigest()
