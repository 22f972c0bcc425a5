"""The pictures of the README and docs, made small from a finished demo run.

    python scripts/docs_images.py RUN_DIR [--out docs/img]

RUN_DIR is a project folder after `make demo` (or `dvc repro`). From its
`plots/generate/{base,finetuned}_grid.png`, `plots/redress/grid.png`, `plots/eda/` and a
training curve under `dvclive/`, this writes palette PNGs (under ~500 KB in all):

- `demo.png`: the README's first picture: a few prompt-grid cells, base SD above
  fine-tuned SD (same caption, same seed), and the first redress rows;
- `generated_base.png`, `generated_finetuned.png`: the first rows of the two prompt grids;
- `redress.png`: the redress grid (input, target sentence, v2's target map, base, fine-tuned);
- `shape.png`: the shape stage's grid (source, sentence, coarse map, drawn and true maps);
- `eda_color.png`, `eda_samples.png`: two EDA figures of the train split;
- `training_loss.png`: `finetune_sd`'s loss per step with its running mean;
- `sources.json`: the run's git commit, a hash of its params.yaml, the params sections that
  shape the pictures, the date, and each picture's source files (relative to RUN_DIR).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import matplotlib
import yaml
from PIL import Image, ImageDraw

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))
from fashion.core.grids import HEADER  # noqa: E402
from fashion.core.grids import grid_font as font  # noqa: E402

# The params sections that decide what the pictures show.
SECTIONS = (
    "demo", "training", "eda", "finetune_sd", "reshape", "finetune_inpaint", "redress", "generate",
)  # fmt: skip
CURVES = (  # the first that exists is drawn
    "dvclive/finetune_sd/plots/metrics/train/loss.tsv",
    "dvclive/finetune_inpaint/plots/metrics/train/loss.tsv",
    "dvclive/finetune_clip/plots/metrics/train/loss.tsv",
)
EDA = {"eda_color.png": "plots/eda/color.png", "eda_samples.png": "plots/eda/sample_grid.png"}
TILE = 128  # px of one image in demo.png


def save_small(image: Image.Image, path: Path, colors: int = 256) -> None:
    """A palette PNG of `colors` colours: median cut refined by k-means, which keeps the
    generated images' colours (plain median cut greys them); no dithering."""
    small = image.convert("RGB").quantize(colors=colors, kmeans=3, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def cells(grid: Image.Image, columns: int) -> list[Image.Image]:
    """The images of a grid `columns` wide, row by row."""
    size = grid.width // columns
    return [
        grid.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
        for r in range(grid.height // size)
        for c in range(columns)
    ]


def grid_prompts(run: Path, count: int) -> list[dict[str, str]]:
    """The manifest rows of the prompt grid's cells (the first `count` images that are not
    of the matched set), or [] when the run has no manifest."""
    manifest = run / "data" / "generated" / "manifest.csv"
    if not manifest.exists():
        return []
    with manifest.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "finetuned"]
    return [r for r in rows if r["source"] != "matched"][:count]


def short(prompt: str) -> str:
    """'the lady wore a red long-sleeved dress.' -> 'red long-sleeved dress'."""
    found = re.search(r"\b(?:a|an) (.+?)\.?$", prompt)
    return found.group(1) if found else prompt.rstrip(".")


def chosen_cells(prompts: list[dict[str, str]], count: int, n: int) -> list[int]:
    """The first `n` colours of the grid, one cell each: the j-th colour's j-th cell (so the
    sleeve and category vary too); evenly spaced cells without a manifest."""
    if not prompts:
        return list(range(0, count, max(1, count // n)))[:n]
    by_color: dict[str, list[int]] = {}
    for k, row in enumerate(prompts):
        by_color.setdefault(row.get("color") or str(k), []).append(k)
    return [group[j % len(group)] for j, group in enumerate(list(by_color.values())[:n])]


# the redress grid's columns, by their count (redress v1, v2)
REDRESS_COLUMNS = {
    4: ("input", "target sentence", "base", "fine-tuned"),
    5: ("input", "target sentence", "target map", "base", "fine-tuned"),
}


def redress_rows(grid: Image.Image, rows: int) -> list[Image.Image]:
    """The rows of `plots/redress/grid.png` (square columns: input, target sentence, in v2
    the target map, base, fine-tuned), without its header."""
    cell = (grid.height - HEADER) // rows
    return [
        grid.crop((0, HEADER + i * cell, grid.width, HEADER + (i + 1) * cell)) for i in range(rows)
    ]


def demo_picture(
    base: list[Image.Image],
    tuned: list[Image.Image],
    labels: list[str],
    redress: list[Image.Image],
) -> Image.Image:
    """Base above fine-tuned for each chosen cell, then redress rows, labelled."""
    margin, title_font, label_font = 104, font(17), font(14)
    titles = (
        "Text to image: the same caption and seed, base SD vs fine-tuned SD",
        "Redress: the garment redrawn to another test image's sentence",
    )
    label_h = 40
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    columns = REDRESS_COLUMNS[round(redress[0].width / redress[0].height)] if redress else ()
    width = max(
        margin + TILE * max(len(base), len(columns)),
        *(round(probe.textlength(t, font=title_font)) + 16 for t in titles),
    )
    redress_h = TILE * len(redress)
    height = 34 + label_h + 2 * TILE + 20 + 34 + 24 + redress_h + 8
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 8
    draw.text((8, y), titles[0], fill="black", font=title_font)
    y += 26
    for j, label in enumerate(labels):
        text = "\n".join(textwrap.wrap(label, width=15)[:2])
        draw.multiline_text((margin + j * TILE + 4, y + 2), text, fill="black", font=label_font)
    y += label_h
    for name, images in (("base", base), ("fine-tuned", tuned)):
        draw.text((8, y + TILE // 2 - 8), name, fill="black", font=label_font)
        for j, image in enumerate(images):
            sheet.paste(
                image.resize((TILE, TILE), Image.Resampling.LANCZOS), (margin + j * TILE, y)
            )
        y += TILE
    y += 20
    draw.text((8, y), titles[1], fill="black", font=title_font)
    y += 34
    for j, name in enumerate(columns):
        draw.text((margin + j * TILE + 4, y), name, fill="black", font=label_font)
    y += 24
    for i, strip in enumerate(redress):
        strip = strip.resize((len(columns) * TILE, TILE))
        draw.text((8, y + strip.height // 2 - 8), f"pair {i + 1}", fill="black", font=label_font)
        sheet.paste(strip, (margin, y))
        y += strip.height
    return sheet


def titled(image: Image.Image, title: str) -> Image.Image:
    """`image` under `title`, wrapped to its width."""
    lines = textwrap.wrap(title, width=image.width // 8)
    top = 8 + 18 * len(lines)
    sheet = Image.new("RGB", (image.width, image.height + top), "white")
    ImageDraw.Draw(sheet).multiline_text((4, 4), "\n".join(lines), fill="black", font=font(14))
    sheet.paste(image, (0, top))
    return sheet


def curve(tsv: Path, out: Path, stage: str) -> None:
    """The loss per step (light) and its running mean (dark), log scale."""
    with tsv.open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    name = rows[0][-1]
    steps = [float(r[0]) for r in rows[1:]]
    values = [float(r[-1]) for r in rows[1:]]
    window = max(1, min(50, len(values) // 10))
    mean = []
    for k in range(len(values)):
        recent = values[max(0, k - window + 1) : k + 1]
        mean.append(sum(recent) / len(recent))
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    ax.plot(steps, values, color="#9ecae1", linewidth=0.8, label=f"{name} per step")
    ax.plot(steps, mean, color="#08519c", linewidth=1.8, label=f"running mean of {window}")
    ax.set(xlabel="step", ylabel=name, title=f"{stage}: training {name}", yscale="log")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def commit_of(run: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(run), "rev-parse", "HEAD"], capture_output=True)
    return done.stdout.decode().strip() if done.returncode == 0 else None


def write_generated(run: Path, out: Path, args: argparse.Namespace, columns: int) -> dict:
    """demo.png and the two cropped prompt grids; name -> source files."""
    grids = {m: Image.open(run / f"plots/generate/{m}_grid.png") for m in ("base", "finetuned")}
    tiles = {m: cells(g, columns) for m, g in grids.items()}
    prompts = grid_prompts(run, len(tiles["base"]))
    picked = chosen_cells(prompts, len(tiles["base"]), args.columns)
    labels = [short(prompts[k]["prompt"]) if prompts else f"grid cell {k + 1}" for k in picked]
    redress = Image.open(run / "plots/redress/grid.png")
    hero = demo_picture(
        [tiles["base"][k] for k in picked],
        [tiles["finetuned"][k] for k in picked],
        labels,
        redress_rows(redress, args.redress_grid_rows)[: args.redress_rows],
    )
    save_small(hero, out / "demo.png")
    manifest = ["data/generated/manifest.csv"] if prompts else []
    sources = {
        "demo.png": [
            *(f"plots/generate/{m}_grid.png" for m in grids),
            "plots/redress/grid.png",
            *manifest,
        ]
    }
    n = args.grid_rows * columns
    colors = list(dict.fromkeys(short(r["prompt"]).split()[0] for r in prompts[:n]))
    shown = f" (colours {', '.join(colors)})" if colors else ""
    for model, title in (("base", "base SD"), ("finetuned", "fine-tuned SD")):
        grid = grids[model]
        kept = grid.crop((0, 0, grid.width, args.grid_rows * grid.width // columns))
        name = f"generated_{model}.png"
        save_small(
            titled(kept, f"{title}: the prompt grid's first {n} prompts, row by row{shown}"),
            out / name,
        )
        sources[name] = [f"plots/generate/{model}_grid.png", *manifest]
    return sources


def write_others(run: Path, out: Path) -> dict:
    """The redress grid, the EDA figures and a training curve; name -> source files."""
    save_small(Image.open(run / "plots/redress/grid.png"), out / "redress.png")
    sources = {"redress.png": ["plots/redress/grid.png"]}
    if (run / "plots/shape/grid.png").is_file():  # redress v2's maps
        save_small(Image.open(run / "plots/shape/grid.png"), out / "shape.png", colors=64)
        sources["shape.png"] = ["plots/shape/grid.png"]
    for name, source in EDA.items():
        save_small(Image.open(run / source), out / name, colors=128)
        sources[name] = [source]
    tsv = next((run / c for c in CURVES if (run / c).exists()), None)
    if tsv is None:
        tsv = sorted((run / "dvclive").glob("*/plots/metrics/**/*.tsv"))[0]
    curve(tsv, out / "training_loss.png", stage=tsv.relative_to(run / "dvclive").parts[0])
    save_small(Image.open(out / "training_loss.png"), out / "training_loss.png", colors=64)
    sources["training_loss.png"] = [tsv.relative_to(run).as_posix()]
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a project folder after make demo / dvc repro")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--columns", type=int, default=6, help="grid cells in demo.png")
    parser.add_argument("--redress-rows", type=int, default=3, help="redress pairs in demo.png")
    parser.add_argument("--grid-rows", type=int, default=4, help="prompt-grid rows kept")
    args = parser.parse_args(argv)
    run: Path = args.run
    params_file = run / "params.yaml"
    params = (yaml.safe_load(params_file.read_text()) if params_file.exists() else None) or {}
    columns = int(params.get("generate", {}).get("grid_columns", 8))
    args.redress_grid_rows = int(params.get("redress", {}).get("grid_rows", 8))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sources = write_generated(run, out, args, columns) | write_others(run, out)

    where = run.resolve()
    record: dict[str, Any] = {
        "commit": commit_of(run),
        "run": where.relative_to(ROOT).as_posix() if where.is_relative_to(ROOT) else None,
        "date": datetime.date.today().isoformat(),
        "params_sha256": (
            hashlib.sha256(params_file.read_bytes()).hexdigest() if params_file.exists() else None
        ),
        "params": {s: params[s] for s in SECTIONS if s in params},
        "files": {
            name: {"bytes": (out / name).stat().st_size, "sources": paths}
            for name, paths in sources.items()
        },
    }
    (out / "sources.json").write_text(json.dumps(record, indent=2) + "\n")
    for name, f in record["files"].items():
        print(f"{name:24} {f['bytes'] / 1024:7.1f} KB")
    total = sum(f["bytes"] for f in record["files"].values())
    print(f"{'total':24} {total / 1024:7.1f} KB, from commit {record['commit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
