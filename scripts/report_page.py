"""Build the report page: every plot dvc.yaml declares, drawn by `dvc plots show` from the
workspace's outputs, with vega, vega-lite and vega-embed served beside the page, so it
works offline (DVC's own page loads them from a CDN).

    python scripts/report_page.py [--out report/page] [--project .]

The scripts come from report/node_modules (`npm ci --prefix report`, which `make report`
runs); they are copied to OUT/vendor/. Writes OUT/index.html (and OUT/static/ for the
images) and prints its path. Open it in a browser.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "report/template.html"
NODE_MODULES = ROOT / "report/node_modules"
# what the template's <script> tags load, from the npm packages of report/package.json
SCRIPTS = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js",
           "vega-embed/build/vega-embed.min.js")  # fmt: skip


class ReportError(Exception):
    """A missing prerequisite of the page, said in one line."""


def vendor_scripts(node_modules: Path = NODE_MODULES) -> list[Path]:
    """The page's three scripts, or a ReportError saying how to install them."""
    paths = [node_modules / s for s in SCRIPTS]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ReportError(
            f"{missing[0]}: missing; install the page's scripts with `npm ci --prefix report`"
        )
    return paths


def build_page(out: Path, project: Path = ROOT, node_modules: Path = NODE_MODULES) -> Path:
    """Write the page for `project`'s outputs to `out` (replaced whole); returns index.html."""
    out = out.resolve()
    if out.exists() and (not (out / "index.html").is_file() or (out / "dvc.yaml").exists()):
        # replaced whole below: only an earlier page, never, say, the project
        raise ReportError(f"{out}: exists and is not a report page; choose another --out")
    scripts = vendor_scripts(node_modules)
    if out.exists():
        shutil.rmtree(out)
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(TEMPLATE),
         "-o", str(out)],
        cwd=project, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ReportError(f"dvc plots show failed in {project}: {proc.stderr.strip()[-2000:]}")
    vendor = out / "vendor"
    vendor.mkdir()
    for script in scripts:
        shutil.copy2(script, vendor / script.name)
    return out / "index.html"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "report/page")
    parser.add_argument("--project", type=Path, default=ROOT)
    args = parser.parse_args()
    try:
        print(build_page(args.out, args.project))
    except ReportError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
