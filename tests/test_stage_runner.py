"""The stage runner: path options from `main`'s signature, user errors as one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import ROOT, run
from fashion.core.stage import PipelineError, path_options, run_stage
from subset_writer import make_rows, write_subset


def main(subset: Path = Path("data/subset"), metrics_file: Path = Path("m.json")) -> None:
    """A stage. More text."""
    raise PipelineError(f"{subset}: not found ({metrics_file})")


def test_each_path_default_is_an_option() -> None:
    assert path_options(main, []) == {"subset": Path("data/subset"), "metrics_file": Path("m.json")}
    chosen = path_options(main, ["--subset", "elsewhere", "--metrics-file", "x/y.json"])
    assert chosen == {"subset": Path("elsewhere"), "metrics_file": Path("x/y.json")}


def test_an_unknown_option_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        path_options(main, ["--out", "x"])
    assert "unrecognized arguments: --out x" in capsys.readouterr().err


def test_a_pipeline_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_stage(main, ["--subset", "nowhere"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: nowhere: not found (m.json)\n"


def test_a_stage_writes_where_its_options_say(tmp_path: Path) -> None:
    """The labels stage, run as dvc.yaml runs it, reads and writes the paths it is given."""
    write_subset(tmp_path / "in/train.h5", make_rows(6, seed=1))
    write_subset(tmp_path / "in/test.h5", make_rows(4, seed=2, start=6))
    (tmp_path / "params.yaml").write_text("labels: {}\n")
    script = ROOT / "stages/labels.py"
    out, metrics = tmp_path / "out/labels", tmp_path / "out/labels.json"
    run([sys.executable, str(script), "--subset", "in", "--out", str(out),
         "--metrics-file", str(metrics)], tmp_path)  # fmt: skip
    assert (out / "labels.csv").is_file() and metrics.is_file()
    assert not (tmp_path / "data").exists()  # nothing at the default paths
    help_text = run([sys.executable, str(script), "--help"], tmp_path).stdout
    assert "--subset PATH" in help_text and "default: data/subset" in help_text


def test_a_script_that_returns_exits_0_with_its_buffered_output(tmp_path: Path) -> None:
    """Run as a script, a stage ends through `quick_exit` (no interpreter teardown): its exit
    status is 0 and what it printed to piped, block-buffered streams still arrives, while
    code after `run_stage` never runs."""
    script = tmp_path / "stage.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from fashion.core.stage import run_stage\n"
        "def main(out: Path = Path('o.txt')) -> None:\n"
        "    out.write_text('done')\n"
        "    print('x' * 5000)\n"
        "    print('warned', file=sys.stderr)\n"
        "run_stage(main)\n"
        "print('after run_stage')\n"
    )
    proc = run([sys.executable, str(script), "--out", "written.txt"], tmp_path)
    assert proc.returncode == 0
    assert proc.stdout == "x" * 5000 + "\n" and "warned" in proc.stderr
    assert (tmp_path / "written.txt").read_text() == "done"
