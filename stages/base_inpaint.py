"""Base inpainting model: what finetune_inpaint starts from and redress runs zero-shot.

Writes models/base_inpaint/source.json (what later stages load with `from_pretrained`):
- for a hub id or folder of an SD inpainting pipeline (`base_inpaint.pretrained`), that id
  with its revision resolved to a commit here, once: finetune_inpaint (the fingerprint its
  checkpoints resume on) and redress load that commit whatever the hub does later;
- for `finetuned_sd` (the demo), finetune_sd's model (a saved pipeline, or LoRA weights
  fused onto base_sd's) saved in models/base_inpaint/pipeline as an inpainting pipeline with
  its 4-channel UNet: the zero-shot baseline as it is, grown to 9 channels by
  finetune_inpaint.

The demo's model is copied, not recorded as a pointer to models/sd, so that finetune_inpaint
and redress read only this folder: it changes when models/sd does on the demo, and never
for a hub base, whose source.json is the same however often finetune_sd re-runs; DVC then
keeps their hours of work. The copy is the fine-tuned weights as they are (the same starting
weights as loading models/sd), and the growing stays in finetune_inpaint, where it was, so
the fine-tune's random draws are the same too.
"""

from __future__ import annotations

from pathlib import Path

from fashion.core.atomic import atomic_path
from fashion.core.params import PARAMS_FILE, load_params, section
from fashion.core.provenance import resolve_revision, write_source
from fashion.core.stage import PipelineError, run_stage
from fashion.inpaint.models import FINETUNED_SD, as_inpainting
from fashion.sd.models import load_finetuned_sd

STAGE = "base_inpaint"


def main(
    sd: Path = Path("models/sd"),
    base_sd: Path = Path("models/base_sd"),
    out: Path = Path("models/base_inpaint"),
) -> None:
    params = section(load_params(), STAGE)
    pretrained, revision = str(params["pretrained"]), params.get("revision")
    if pretrained == FINETUNED_SD and revision is not None:
        raise PipelineError(
            f"{PARAMS_FILE}: {STAGE}.revision must be null for {FINETUNED_SD} "
            f"(its model is {sd}), got {revision!r}"
        )
    if Path(pretrained).is_dir() and not (Path(pretrained) / "model_index.json").is_file():
        raise PipelineError(
            f"{PARAMS_FILE}: {STAGE}.pretrained {pretrained}: a folder without "
            "model_index.json (not a saved pipeline)"
        )
    with atomic_path(out, is_dir=True) as tmp:
        if pretrained != FINETUNED_SD:
            # a hub id's commit now, recorded: later stages never resolve it again
            revision = resolve_revision(pretrained, revision, f"{STAGE}.pretrained")
            write_source(tmp, pretrained, revision)
            return
        as_inpainting(load_finetuned_sd(sd, base_sd)).save_pretrained(tmp / "pipeline")
        write_source(tmp, str(out / "pipeline"))


if __name__ == "__main__":
    run_stage(main)
