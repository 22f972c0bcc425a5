"""The sampling and evaluation stages, one after another, in one project (run by
test_sampling_processes.py, as one process or under `accelerate launch`).

Usage: python tests/sampling_processes_worker.py PROJECT RECORD_DIR, with `stages/` and
`tests/` on PYTHONPATH. Runs reference, eval_clip, generate, redress, evaluate and
evaluate_redress in PROJECT as their scripts do, with a stand-in for Inception-v3 (a test
fetches nothing), and saves RECORD_DIR/rank{N}.json: the world size and every share this
process was given (`Processes.share`: the items shared out, and its own).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import eval_clip
import evaluate
import evaluate_redress
import generate
import redress
import reference
from fashion.core.processes import Processes
from test_evaluate import StandInInception

STAGES = {
    "reference": reference,
    "eval_clip": eval_clip,
    "generate": generate,
    "redress": redress,
    "evaluate": evaluate,
    "evaluate_redress": evaluate_redress,
}


def main(project: Path, records: Path) -> None:
    shares: list[dict] = []
    share, running = Processes.share, {"stage": ""}

    def recorded(self: Processes, items: list) -> list:
        mine = share(self, items)
        shares.append({"stage": running["stage"], "items": list(items), "mine": mine})
        return mine

    Processes.share = recorded
    for module in (reference, evaluate, evaluate_redress):
        module.inception_weights = lambda p, stage: Path("stand-in-inception.pth")
        module.load_inception = lambda weights, device: StandInInception().to(device)
    os.chdir(project)
    for stage, module in STAGES.items():
        running["stage"] = stage
        module.main()
    processes = Processes()
    record = {"world": processes.world, "rank": processes.rank, "shares": shares}
    (records / f"rank{processes.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
