"""prepare: decrypt G2.h5 from the benchmark's zip and write a seeded subset of each split.

Reads `<benchmark.root>/{Img/G2.zip, Anno/language_original.mat, Eval/ind.mat}` and writes
`data/subset/{train,test}.h5` (format: `fashion/subset.py`): mean restored, HWC uint8; the
test file also holds each image's redress target from `test_set_pair_ind`.
The first images are checked to restore to the expected layout before the full pass.
The zip password comes from the environment variable named by `benchmark.password_env`
(the demo's `demo.password` when it is unset). Every input is checked before the long
decryption; `data/subset` appears whole or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from fashion.core.atomic import atomic_path
from fashion.core.params import load_params, section
from fashion.core.stage import PipelineError, run_stage
from fashion.data.decrypt import extracted_member
from fashion.data.pairs import REDRESS_TARGET, redress_pairs
from fashion.data.release import (
    MEMBER,
    benchmark_paths,
    check_g2_layout,
    open_g2,
    read_annotations,
    read_g2_rows,
    read_split,
    verify_sha256,
)
from fashion.data.subset import create_subset, subset_path


def zip_password(params: dict[str, Any]) -> str:
    env = section(params, "benchmark").get("password_env", "FASHION_ZIP_PASSWORD")
    if os.environ.get(env):
        return os.environ[env]
    demo_password = params.get("demo", {}).get("password")
    if demo_password is None:
        raise PipelineError(f"set the zip password in the environment variable {env}")
    return str(demo_password)


def choose_rows(
    split_rows: np.ndarray, n: int | str, seed: int, what: str, split_file: Path
) -> np.ndarray:
    """A seeded sample of `n` rows ("all": every row) of one split, in ascending order."""
    if n == "all":
        return np.sort(split_rows)
    if n > len(split_rows):
        raise PipelineError(
            f"{split_file}: prepare.{what}={n} but the split has only {len(split_rows)} images"
        )
    return np.sort(np.random.default_rng(seed).choice(split_rows, size=n, replace=False))


def main(out: Path = Path("data/subset")) -> None:
    params = load_params()
    cfg, root = section(params, "prepare"), section(params, "benchmark").get("root")
    seed = int(cfg["seed"])
    paths = benchmark_paths(root)
    password = zip_password(params)
    if expected_sha256 := section(params, "benchmark").get("zip_sha256"):
        verify_sha256(paths.zip, str(expected_sha256))
    ann = read_annotations(paths.annotations)
    split = read_split(paths.split, len(ann))
    source, target = redress_pairs(split, paths.split)
    redress_target = dict(zip(source.tolist(), target.tolist(), strict=True))
    n_train, n_test = cfg.get("n_train_images", "all"), cfg.get("n_test_images", "all")
    chosen = {
        "train": choose_rows(split.train, n_train, seed, "n_train_images", paths.split),
        # a different stream per split, so n_train_images does not change which test rows are drawn
        "test": choose_rows(split.test, n_test, seed + 1, "n_test_images", paths.split),
    }
    label = f"{paths.zip}:{MEMBER}"
    with (
        atomic_path(out, is_dir=True) as tmp,
        extracted_member(paths.zip, password, tmp.parent) as g2_file,
        open_g2(g2_file, label, len(ann), paths.annotations) as g2,
    ):
        check_g2_layout(g2, label)  # a wrong layout stops here, not after the full pass
        for name, rows in chosen.items():
            table = {
                "index": rows,
                "name": [ann.names[i] for i in rows],
                "caption": [ann.captions[i] for i in rows],
                "word_ids": [ann.word_ids[i] for i in rows],
                **{k: v[rows] for k, v in ann.codes.items()},
            }
            with h5py.File(subset_path(tmp, name), "w") as f:
                size = g2["ih"].shape[:1:-1]  # stored (W, H) -> (H, W)
                images, segmentation = create_subset(f, len(rows), table, size)
                if name == "test":  # each test image's redress target (fashion.data.pairs)
                    targets = np.array([redress_target[i] for i in rows], np.int64)
                    f.create_dataset(REDRESS_TARGET, data=targets)
                done = 0
                with tqdm(total=len(rows), desc=f"prepare {name}", unit="img") as bar:
                    for pixels, masks in read_g2_rows(g2, rows, label):
                        images[done : done + len(pixels)] = pixels
                        segmentation[done : done + len(pixels)] = masks
                        done += len(pixels)
                        bar.update(len(pixels))
    print(f"wrote {out}: {len(chosen['train'])} train, {len(chosen['test'])} test images")


if __name__ == "__main__":
    run_stage(main)
