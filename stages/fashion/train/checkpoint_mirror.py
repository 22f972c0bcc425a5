"""A copy of the latest training checkpoint on storage that outlives the machine.

In Colab the work tree sits on the VM's local disk (fast, large, lost on a disconnect) and
only Drive survives. A training stage whose `checkpoint_mirror` param names a folder on
Drive copies each new checkpoint there, and a run on a fresh VM starts by copying the
newest complete one back. A disconnect then loses at most `checkpoint_every` steps.

Layout, for a mirror folder `M`:

    M/fingerprint.json            the checkpoints root's top-level files (readable copy)
    M/step_0000500/               the latest checkpoint, a *unit*: accelerate's files, and
        .mirror/root/...          what belongs with it from beside the checkpoints: the
                                  root's files and folders (`best/`: the best weights as of
                                  this step)
        .mirror/manifest.json     each file's size and SHA-256, written last
    .M.spare/                     (beside M) the unit before it, the next save's draft

Drive keeps a deleted file in its bin, counted against the quota, until the bin is
emptied (and may keep an overwritten file's earlier versions), so a save deletes no
checkpoint and writes each changed file once:
1. the spare loses its manifest (from here on a draft), and each file of the new unit whose
   size or SHA-256 differs from the spare's manifest is overwritten in place (unchanged
   ones, such as a `best/` that did not improve, are not written); stale files go;
2. its manifest is written (temporary file, then rename), and it is renamed into M (the
   commit);
3. the previous latest unit is renamed out of M to become the next spare.
So a save writes about one checkpoint (its changed files) and renames two folders. A
disconnect at any point leaves the newest complete unit in M, or for a moment as the spare
with its manifest, and `restore_checkpoint` takes the newest complete one: a unit in M is
complete (it got there by a rename once whole), the spare only with a manifest whose files
are all there at their sizes.

Drive quota: every byte written is assumed to stay on Drive (bin, file versions) until the
run ends and the bin is emptied, so a run with N saves needs N checkpoints of room for its
mirror (`mirror_checkpoint` returns the bytes each save writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fashion.core.stage import PipelineError

HIDDEN = ".mirror"
MANIFEST = f"{HIDDEN}/manifest.json"
ROOT_PART = f"{HIDDEN}/root"  # in a unit: the checkpoints root's own files and folders


# Every change the mirror makes to its storage is one of these four.
def _copy(src: Path, dst: Path) -> int:
    """Overwrite `dst` in place with `src`'s bytes; how many were written."""
    shutil.copyfile(src, dst)
    return src.stat().st_size


def _rename(src: Path, dst: Path) -> None:
    os.rename(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _write_text(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a temporary file renamed onto it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    _rename(tmp, path)


def spare_of(mirror: Path) -> Path:
    return mirror.with_name(f".{mirror.name}.spare")


def _discard(unit: Path) -> None:
    """Remove a unit of the mirror: renamed out first, so no half-removed unit is left in it
    (only for a step mirrored twice, or an earlier interrupted save's leftovers)."""
    trash = unit.parent.with_name(f".{unit.parent.name}.trash")
    if trash.exists():
        _remove(trash)
    _rename(unit, trash)
    _remove(trash)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def unit_files(
    root: Path, checkpoint: Path, is_checkpoint: Callable[[Path], bool]
) -> dict[str, Path]:
    """{path in the unit: local file} for `checkpoint` and what lies beside it in `root`
    (other checkpoints and hidden, unfinished writes excepted)."""
    files = {p.relative_to(checkpoint).as_posix(): p for p in checkpoint.rglob("*") if p.is_file()}
    for item in root.iterdir():
        if item.name.startswith(".") or item == checkpoint or is_checkpoint(item):
            continue
        inside = item.rglob("*") if item.is_dir() else [item]
        for p in inside:
            if p.is_file():
                files[f"{ROOT_PART}/{p.relative_to(root).as_posix()}"] = p
    return dict(sorted(files.items()))


def read_manifest(unit: Path, strict: bool = True) -> dict[str, Any] | None:
    """A unit's manifest ({"checkpoint": name, "files": {path: [size, sha256]}}), None when
    it has none; a damaged one is an error (`strict`) or None."""
    path = unit / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        name, files = manifest["checkpoint"], manifest["files"]
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise ValueError(f"bad checkpoint name {name!r}")
        if not isinstance(files, dict):
            raise ValueError("files is not a mapping")
        for rel, entry in files.items():
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise ValueError(f"file {rel!r} outside the unit")
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)):
                raise ValueError(f"file {rel!r} without [size, sha256]")
    except (ValueError, KeyError, TypeError) as err:
        if strict:
            raise PipelineError(f"{path}: not a checkpoint mirror manifest ({err})") from err
        return None
    return manifest


def _fill(unit: Path, files: dict[str, Path], name: str) -> int:
    """Make the draft `unit` hold `files` and its manifest; the bytes written."""
    old = read_manifest(unit, strict=False) or {"files": {}}
    if (unit / MANIFEST).exists():
        _remove(unit / MANIFEST)  # from here on a draft: restore never takes it
    entries, written = {}, 0
    for rel, src in files.items():
        entry = [src.stat().st_size, sha256(src)]
        entries[rel] = entry
        dst = unit / rel
        if old["files"].get(rel) == entry and dst.is_file() and dst.stat().st_size == entry[0]:
            continue  # the same bytes are already there
        dst.parent.mkdir(parents=True, exist_ok=True)
        written += _copy(src, dst)
    for path in sorted(unit.rglob("*"), reverse=True):  # files before their folders
        rel = path.relative_to(unit).as_posix()
        if (path.is_file() and rel not in entries) or (path.is_dir() and not any(path.iterdir())):
            _remove(path)
    (unit / HIDDEN).mkdir(exist_ok=True)
    _write_text(unit / MANIFEST, json.dumps({"checkpoint": name, "files": entries}) + "\n")
    return written


def mirror_checkpoint(
    root: Path, checkpoint: Path, mirror: Path, is_checkpoint: Callable[[Path], bool]
) -> int:
    """Make `checkpoint` (a folder in `root`), with what lies beside it in `root`, the
    latest unit of `mirror`; the bytes written (see the module's docstring)."""
    root, checkpoint, mirror = Path(root), Path(checkpoint), Path(mirror)
    mirror.mkdir(parents=True, exist_ok=True)
    spare = spare_of(mirror)
    units = sorted((p for p in mirror.iterdir() if is_checkpoint(p)), key=lambda p: p.name)
    if not spare.is_dir():
        if len(units) > 1:  # an interrupted save's two units: the older one is the draft
            _rename(units.pop(0), spare)
        else:
            spare.mkdir()
    written = _fill(spare, unit_files(root, checkpoint, is_checkpoint), checkpoint.name)
    target = mirror / checkpoint.name
    if target.exists():  # this step mirrored before: meanwhile the complete spare stands in
        units.remove(target)
        _discard(target)
    _rename(spare, target)
    for old in reversed(units):  # the newest becomes the next spare; more is a leftover
        if spare.exists():
            _discard(old)
        else:
            _rename(old, spare)
    for item in root.iterdir():  # a readable copy of what the checkpoints were trained with
        there, tmp = mirror / item.name, mirror / f".{item.name}.tmp"
        if not item.is_file() or item.name.startswith("."):
            continue
        if not there.is_file() or there.read_bytes() != item.read_bytes():
            written += _copy(item, tmp)
            _rename(tmp, there)
    return written


def _candidates(
    mirror: Path, is_checkpoint: Callable[[Path], bool]
) -> list[tuple[str, Path, dict[str, Any] | None]]:
    """(checkpoint name, unit, manifest) of every complete unit: those in `mirror` (one
    without a manifest there is of the earlier layout: a plain copy, put there whole), and
    the spare, each with a manifest whose files are all there at their sizes."""

    def whole(unit: Path, manifest: dict[str, Any]) -> bool:
        return all(
            (unit / rel).is_file() and (unit / rel).stat().st_size == size
            for rel, (size, _) in manifest["files"].items()
        )

    found = []
    # the earlier layout's previous copy, left alone when a disconnect came between its renames
    for folder in (mirror, mirror.with_name(mirror.name + ".old")):
        if found or not folder.is_dir():
            continue
        for unit in folder.iterdir():
            if is_checkpoint(unit):
                manifest = read_manifest(unit)
                if manifest is None or whole(unit, manifest):
                    found.append(
                        (manifest["checkpoint"] if manifest else unit.name, unit, manifest)
                    )
    spare = spare_of(mirror)
    manifest = read_manifest(spare) if spare.is_dir() else None
    if manifest and whole(spare, manifest):
        found.append((manifest["checkpoint"], spare, manifest))
    return sorted(found, key=lambda c: c[0])


def restore_checkpoint(
    root: Path, mirror: str | Path | None, is_checkpoint: Callable[[Path], bool]
) -> bool:
    """Copy the newest complete mirrored checkpoint (and what lay beside it) into `root`
    when `root` holds no checkpoint; whether it did.

    The stage's own resume logic then decides, as for any local checkpoint, whether it was
    trained with the same settings and data.
    """
    if not mirror:
        return False
    root, mirror = Path(root), Path(mirror)
    if root.is_dir() and any(is_checkpoint(p) for p in root.iterdir()):
        return False
    found = _candidates(mirror, is_checkpoint)
    if not found:
        return False
    name, unit, manifest = found[-1]
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp"  # removed as an unfinished save if this stops half-way
    shutil.rmtree(tmp, ignore_errors=True)
    for item in root.iterdir():  # no checkpoint here: a folder beside (best/) is a leftover
        if item.is_dir() and not item.name.startswith("."):
            shutil.rmtree(item)
    if manifest is None:  # the earlier layout: the root's files at the mirror's top level
        for item in unit.parent.iterdir():
            if item.is_file():
                shutil.copy2(item, root / item.name)
        shutil.copytree(unit, tmp)
    else:
        beside = [rel for rel in manifest["files"] if rel.startswith(f"{ROOT_PART}/")]
        for rel in manifest["files"]:
            dst = root / rel[len(ROOT_PART) + 1 :] if rel in beside else tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(unit / rel, dst)
    tmp.mkdir(exist_ok=True)
    tmp.rename(root / name)
    print(f"{root}: restored the {name} checkpoint mirrored in {mirror}")
    return True
