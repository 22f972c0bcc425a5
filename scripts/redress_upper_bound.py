"""How much redress v2 loses to its shape stage: the texture model given each validation
image's own true map against the map the shape model draws, redressing the image to its
own caption (a reconstruction: the one case where the true target map exists).

    python scripts/redress_upper_bound.py [--n 204]

Run in a project where `reshape`, `finetune_inpaint` (redress v2) and the CLIP stages have
run. The validation images (never trained on) are redrawn inside the v2 mask (their garment
mask joined with the map's garments, less hair and face) with the same seeds, once per map,
and judged as `evaluate_redress` judges (the fine-tuned and base CLIPs zero-shot, the pixel
colour judge) against their own codes. Prints one JSON line: per judge and attribute, the
accuracy with the true map and with the drawn one, and true - drawn as a paired difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))

from fashion.clip.models import load_base_clip, load_clip  # noqa: E402
from fashion.core.params import load_params, section  # noqa: E402
from fashion.data.attributes import ATTRIBUTES  # noqa: E402
from fashion.data.splits import train_validation_rows  # noqa: E402
from fashion.data.subset import read_images, read_segmentation, read_table  # noqa: E402
from fashion.inpaint.masks import class_ids, garment_mask, redress_masks  # noqa: E402
from fashion.inpaint.models import load_finetuned_inpainting  # noqa: E402
from fashion.inpaint.redress import redrawn  # noqa: E402
from fashion.inpaint.unet import with_map_channels  # noqa: E402
from fashion.metrics.intervals import paired_difference, proportion  # noqa: E402
from fashion.metrics.judges import Judges  # noqa: E402
from fashion.sd.sampling import check_scheduler, device_and_dtype  # noqa: E402
from fashion.shape.maps import redress_mask_v2  # noqa: E402
from fashion.shape.model import load_shape_model, predict_target_maps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="validation images (default all)")
    parser.add_argument("--subset", type=Path, default=Path("data/subset"))
    parser.add_argument("--shape", type=Path, default=Path("models/shape"))
    parser.add_argument("--inpaint", type=Path, default=Path("models/inpaint"))
    parser.add_argument("--clip", type=Path, default=Path("models/clip"))
    parser.add_argument("--base-clip", type=Path, default=Path("models/base_clip"))
    args = parser.parse_args()
    params = load_params()
    p = section(params, "redress")
    train = args.subset / "train.h5"
    table = read_table(train)
    rows = train_validation_rows(table, section(params, "split"))[1][: args.n]
    images, segmentation = read_images(train, rows), read_segmentation(train, rows)
    captions = table["caption"].iloc[rows].tolist()
    drawn_maps = predict_target_maps(load_shape_model(args.shape), segmentation, captions)
    device, dtype = device_and_dtype(p["precision"], "redress.precision")
    pipe = with_map_channels(load_finetuned_inpainting(args.inpaint, torch_dtype=dtype))
    pipe.scheduler = check_scheduler(p["scheduler"], "redress.scheduler").from_config(
        pipe.scheduler.config
    )
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    classes, dilation = class_ids(p["mask_classes"]), int(p["mask_dilation"])
    source = redress_masks(segmentation, p)
    judges = Judges(
        {"finetuned_clip": load_clip(args.clip), "base_clip": load_base_clip(args.base_clip)},
        True,
        64,
        device,
    )
    codes = table[list(ATTRIBUTES)].iloc[rows].reset_index(drop=True)
    hits = {}
    for name, maps in (("true_map", segmentation), ("drawn_map", drawn_maps)):
        masks = redress_mask_v2(source, segmentation, garment_mask(maps, classes, dilation))
        seeds = [int(p["seed"]) + k for k in range(len(rows))]
        batch = int(p["batch_size"])
        out = np.concatenate(
            [
                redrawn(pipe, *(a[k : k + batch] for a in (images, masks, captions, seeds)), p,
                        maps[k : k + batch])
                for k in range(0, len(rows), batch)
            ]
        )  # fmt: skip
        hits[name] = judges.attribute_hits(out, judges.embed(out), codes)
    result: dict = {"n_images": len(rows)}
    for judge, by_attribute in hits["true_map"].items():
        for attribute, true_hits in by_attribute.items():
            drawn_hits = hits["drawn_map"][judge][attribute]
            result.setdefault(judge, {})[attribute] = (
                proportion("true_map_acc", true_hits)
                | proportion("drawn_map_acc", drawn_hits)
                | paired_difference("true_minus_drawn", drawn_hits, true_hits, 0)
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
