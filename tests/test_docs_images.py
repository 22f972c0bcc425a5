"""scripts/docs_images.py on a tiny fake run: every picture written, small, with a sidecar
naming the run's commit."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, run

SCRIPT = ROOT / "scripts" / "docs_images.py"
PICTURES = (
    "demo.png",
    "generated_base.png",
    "generated_finetuned.png",
    "redress.png",
    "eda_color.png",
    "eda_samples.png",
    "training_loss.png",
)
COLUMNS, CELL, PAIRS = 4, 16, 3  # the fake prompt grid: 4 x 4 cells of 16 px; 3 redress rows
COLORS = ("red", "blue", "white", "pink")


def square(color: tuple[int, int, int], size: int = CELL) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def grid(seed: int) -> Image.Image:
    sheet = Image.new("RGB", (COLUMNS * CELL, COLUMNS * CELL), "white")
    for k in range(COLUMNS * COLUMNS):
        color = ((k * 16 + seed) % 256, (k * 40) % 256, (seed * 90) % 256)
        sheet.paste(square(color), ((k % COLUMNS) * CELL, (k // COLUMNS) * CELL))
    return sheet


@pytest.fixture(params=[4, 5], ids=["v1", "v2"])
def fake_run(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A project folder with the outputs the script reads, committed once in git: a redress
    grid of 4 columns (v1) or 5 (v2: the target map), and in v2 the shape grid."""
    redress_columns = request.param
    folder = tmp_path / "run"
    for sub in ("plots/generate", "plots/redress", "plots/eda", "data/generated"):
        (folder / sub).mkdir(parents=True)
    (folder / "params.yaml").write_text(
        f"generate:\n  grid_columns: {COLUMNS}\n  seed: 0\nredress:\n  grid_rows: {PAIRS}\n"
        "evaluate:\n  skip_inception: true\n"
    )
    grid(0).save(folder / "plots/generate/base_grid.png")
    grid(1).save(folder / "plots/generate/finetuned_grid.png")
    redress = Image.new("RGB", (redress_columns * CELL, 20 + PAIRS * CELL), "white")
    for i in range(PAIRS):
        for j in range(redress_columns):
            redress.paste(square((60 * j, 80 * i, 100)), (j * CELL, 20 + i * CELL))
    redress.save(folder / "plots/redress/grid.png")
    if redress_columns == 5:
        (folder / "plots/shape").mkdir()
        redress.save(folder / "plots/shape/grid.png")
    square((200, 30, 30), 40).save(folder / "plots/eda/color.png")
    square((30, 200, 30), 60).save(folder / "plots/eda/sample_grid.png")
    with (folder / "data/generated/manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "model", "prompt", "source", "color"])
        for model in ("base", "finetuned"):
            writer.writerow([f"{model}/m.png", model, "a matched caption.", "matched", 0])
            for k in range(COLUMNS * COLUMNS):
                color = COLORS[k // COLUMNS]
                prompt = f"the lady wore a {color} dress number {k}."
                writer.writerow([f"{model}/{k}.png", model, prompt, "in_domain", k // COLUMNS])
    curve = folder / "dvclive/finetune_sd/plots/metrics/train"
    curve.mkdir(parents=True)
    rows = "".join(f"{step}\t{1 / step}\n" for step in range(1, 41))
    (curve / "loss.tsv").write_text("step\tloss\n" + rows)
    run(["git", "init", "-q"], folder)
    run(["git", "add", "-A"], folder)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], folder)
    return folder


def test_every_picture_and_the_sidecar(fake_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "img"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(fake_run), "--out", str(out), "--columns", "3"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    for name in PICTURES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 0
    assert sum((out / n).stat().st_size for n in PICTURES) < 500_000
    columns = Image.open(fake_run / "plots/redress/grid.png").width // CELL
    with Image.open(out / "demo.png") as demo:
        assert demo.width >= columns * 128  # the redress rows: a cell of 128 px a column
    assert (out / "shape.png").is_file() == (columns == 5)  # v2's maps

    sidecar = json.loads((out / "sources.json").read_text())
    commit = run(["git", "rev-parse", "HEAD"], fake_run).stdout.strip()
    assert sidecar["commit"] == commit
    assert sidecar["run"] is None  # a run outside the project is named by its commit only
    assert len(sidecar["params_sha256"]) == 64
    assert sidecar["params"]["generate"]["grid_columns"] == COLUMNS
    assert "evaluate" not in sidecar["params"]  # only the sections that shape the pictures
    assert set(sidecar["files"]) == set(PICTURES) | ({"shape.png"} if columns == 5 else set())
    for entry in sidecar["files"].values():
        assert entry["sources"] and all((fake_run / s).exists() for s in entry["sources"])
    assert sidecar["files"]["training_loss.png"]["sources"] == [
        "dvclive/finetune_sd/plots/metrics/train/loss.tsv"
    ]


def test_one_cell_per_colour() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import docs_images
    finally:
        sys.path.remove(str(SCRIPT.parent))
    prompts = [{"color": str(k // 4), "prompt": f"a {COLORS[k // 4]} tee."} for k in range(16)]
    # the j-th colour's j-th cell, so the garment varies as well as the colour
    assert docs_images.chosen_cells(prompts, 16, 3) == [0, 5, 10]
    assert docs_images.chosen_cells([], 16, 4) == [0, 4, 8, 12]
    assert docs_images.short("the lady is wearing an orange long-sleeved tee.") == (
        "orange long-sleeved tee"
    )
