"""The report page (`make report`: `dvc plots show` with its scripts served locally), opened
in headless Chromium as a person opens it: every chart renders, every image loads, the
console shows no error. A screenshot is saved.

The page is built in a DVC project holding this repo's dvc.yaml, with small made-up files at
every path its plots name (`test_pipeline` checks, after a real `dvc repro`, that the
pipeline writes each of them). The browser is Debian's `chromium` driven through its
`chromium-driver` by Selenium; the vega scripts come from `npm ci --prefix report`. Without
them the test skips, except under CI=true, where `.ci/run` installs them and a missing one
fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from browser import browser_missing, chromium, console_errors, skip_or_fail
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import report_page  # noqa: E402


def prerequisites_missing() -> str | None:
    if missing := browser_missing():
        return missing
    try:
        report_page.vendor_scripts()
    except report_page.ReportError as err:
        return str(err)
    return None


def top_level_plots() -> list[tuple[str, dict[str, Any] | None]]:
    """dvc.yaml's top-level plots: (id, definition or None for an image path)."""
    entries = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    out: list[tuple[str, dict[str, Any] | None]] = []
    for entry in entries:
        if isinstance(entry, str):
            out.append((entry, None))
        else:
            ((name, definition),) = entry.items()
            out.append((name, definition))
    return out


def chart_files(name: str, definition: dict[str, Any]) -> dict[str, list[str]]:
    """The data files a chart reads, each with the fields it needs (x first)."""
    y = definition.get("y", {})
    if not isinstance(y, dict):  # the plot's id is its file
        y = {name: y}
    return {
        path: [definition["x"], *(fields if isinstance(fields, list) else [fields])]
        for path, fields in y.items()
    }


def write_table(
    path: Path, fields: list[str], template: str | None, rng: np.random.Generator
) -> None:
    """A small table with `fields`: categorical rows for a heat map or bar chart, numbers
    against a numeric x for the curves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sep = "\t" if path.suffix == ".tsv" else ","
    rows = [sep.join(fields)]
    for i in range(12):
        if template == "confusion":
            rows.append(sep.join(f"{f}-{rng.integers(3)}" for f in fields))
        elif template and template.startswith("bar_horizontal"):
            rows.append(sep.join([f"{rng.random():.3f}", *(f"label-{i}" for _ in fields[1:])]))
        else:
            rows.append(sep.join([str(i + 1), *(f"{rng.random():.3f}" for _ in fields[1:])]))
    path.write_text("\n".join(rows) + "\n")


def write_image(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (24, 48, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A DVC project with this repo's dvc.yaml and params.yaml and a file at every plot
    path: (its root, the number of charts, the number of images)."""
    root = tmp_path_factory.mktemp("report") / "project"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, root / name)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    shutil.copytree(ROOT / ".dvc/plots", root / ".dvc/plots")  # the project's chart templates
    rng = np.random.default_rng(0)
    charts = images = 0
    for name, definition in top_level_plots():
        if definition is None:
            if name.endswith(".png"):
                write_image(root / name, rng)
                images += 1
            else:  # a folder of dvclive images
                for step in (1, 2):
                    write_image(root / name / f"validation/step-{step:06d}.png", rng)
                images += 2
            continue
        charts += 1
        for path, fields in chart_files(name, definition).items():
            write_table(root / path, fields, definition.get("template"), rng)
    return root, charts, images


def test_every_chart_has_a_title_and_axis_labels() -> None:
    for name, definition in top_level_plots():
        if definition is not None:
            missing = {"title", "x_label", "y_label"} - definition.keys()
            assert not missing, f"dvc.yaml plot {name} lacks {sorted(missing)}"


def test_each_figure_is_declared_once() -> None:
    """No file is drawn twice (a stage-level plots entry over a top-level one did)."""
    seen: list[str] = []
    for name, definition in top_level_plots():
        seen.extend([name] if definition is None else chart_files(name, definition))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stage_plots = [s for s in stages.values() if s.get("plots")]
    assert not stage_plots, "stage-level plots are drawn beside the top-level ones"
    assert len(seen) == len(set(seen))


def skip_without_browser() -> None:
    skip_or_fail(prerequisites_missing())


def assert_page_renders(page: Path, charts: int, images: int, screenshot: Path) -> None:
    """Open `page` in headless Chromium: `charts` charts drawn, `images` images loaded, no
    error in the console; the whole page saved to `screenshot`."""
    with chromium(screenshot.parent / "chromium-profile") as driver:
        driver.get(page.as_uri())
        # vega-embed draws each chart on a canvas inside the chart's div
        rendered = (
            "return Array.from(document.querySelectorAll('.vega-embed .chart-wrapper > canvas'))"
            ".filter(c => c.width > 0 && c.height > 0).length"
        )
        deadline = time.monotonic() + 60
        while driver.execute_script(rendered) < charts and time.monotonic() < deadline:
            time.sleep(0.25)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(height + 100, 16_000))  # the whole page in the shot
        driver.save_screenshot(str(screenshot))
        assert driver.execute_script(rendered) == charts
        embeds = driver.execute_script("return document.querySelectorAll('.vega-embed').length")
        assert embeds == charts
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert len(loaded) == images and all(loaded)
        errors = console_errors(driver)
        assert not errors, errors
    assert screenshot.stat().st_size > 10_000


def test_the_page_renders_in_chromium(project: tuple[Path, int, int], tmp_path: Path) -> None:
    skip_without_browser()
    root, charts, images = project
    page = report_page.build_page(tmp_path / "page", root)
    assert_page_renders(page, charts, images, tmp_path / "report.png")


def test_the_page_replaces_only_an_earlier_page(tmp_path: Path) -> None:
    """--out names a folder the page replaces whole: an earlier page, never anything else."""
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(report_page.ReportError, match="exists and is not a report page"):
        report_page.build_page(other, ROOT)
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(report_page.ReportError, match="is not a report page"):
        report_page.build_page(ROOT, ROOT)  # the project itself
