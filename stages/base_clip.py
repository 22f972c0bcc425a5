"""Base CLIP: record a hub id / local directory, or build and save a tiny CLIP offline.

Writes `models/base_clip/source.json` (what later stages pass to `from_pretrained`);
for `pretrained: tiny` the model and processor are saved beside it.
"""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPConfig

from fashion.clip.models import TINY, build_tiny_clip
from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, training_section
from fashion.core.provenance import resolve_revision, write_source
from fashion.core.stage import PipelineError, run_stage
from fashion.data.subset import read_table, subset_path


def main(subset: Path = Path("data/subset"), out: Path = Path("models/base_clip")) -> None:
    params = load_params()
    p = training_section(params, "base_clip")
    pretrained, revision = str(p["pretrained"]), p.get("revision")
    with atomic_path(out, is_dir=True) as tmp:
        if pretrained == TINY:
            captions = read_table(subset_path(subset, "train"))["caption"].tolist()
            model, processor = build_tiny_clip(captions, p["tiny"], seed=int(p["seed"]))
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            n = sum(t.numel() for t in model.parameters())
            print(f"tiny CLIP: {n:,} parameters, vocabulary {len(processor.tokenizer)}")
            write_source(tmp, str(out), None)
        else:
            revision = resolve_revision(pretrained, revision, "base_clip.pretrained")
            try:  # fail here, not three stages later, on a wrong id or folder
                CLIPConfig.from_pretrained(pretrained, revision=revision)
            except OSError as err:
                raise PipelineError(
                    f"params.yaml: base_clip.pretrained {pretrained!r} is neither 'tiny', "
                    f"a CLIP folder nor a reachable hub id ({err})"
                ) from err
            write_source(tmp, pretrained, revision)


if __name__ == "__main__":
    run_stage(main)
