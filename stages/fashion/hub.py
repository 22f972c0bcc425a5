"""Where a base model comes from: a saved tiny model, a local directory or a hub id.

A `base_*` stage writes `source.json` into its output folder; later stages call
`read_source` and pass the result to `from_pretrained`, so tiny and real models
go through the same loading code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fashion.config import PipelineError

SOURCE_FILE = "source.json"


def write_source(out_dir: Path, pretrained: str, revision: str | None = None) -> None:
    """Record the model to load: `pretrained` is a hub id or a path (relative to the repo)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SOURCE_FILE).write_text(
        json.dumps({"pretrained": pretrained, "revision": revision}, indent=2) + "\n"
    )


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


def training_fingerprint(
    pretrained: str, revision: str | None, captions: list[str], images: np.ndarray
) -> str:
    """What a training run starts from: the base model (its files, when a local folder) and
    the training data. A checkpoint with another fingerprint must not be resumed: a re-drawn
    demo or a re-trained tiny base would otherwise continue someone else's training."""
    h = hashlib.blake2b(f"{pretrained}@{revision}".encode(), digest_size=20)
    if Path(pretrained).is_dir():
        for f in sorted(Path(pretrained).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(pretrained)).encode())
                with f.open("rb") as stream:
                    for block in iter(lambda: stream.read(1 << 24), b""):
                        h.update(block)
    h.update("\n".join(captions).encode())
    for start in range(0, len(images), 4096):  # a chunk at a time: no copy of all the images
        h.update(np.ascontiguousarray(images[start : start + 4096]).tobytes())
    return h.hexdigest()
