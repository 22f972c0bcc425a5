"""Where a base model comes from: a saved tiny model, a local directory or a hub id.

A `base_*` stage writes `source.json` into its output folder; later stages call
`read_source` and pass the result to `from_pretrained`, so tiny and real models
go through the same loading code.
"""

from __future__ import annotations

import json
from pathlib import Path

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
