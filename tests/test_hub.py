"""Base models are pinned: a hub id is resolved to the commit it points to, once."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import base_clip
from fashion.core.provenance import read_source, resolve_revision
from fashion.core.stage import PipelineError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """`HfApi` stand-in: records what was asked, answers with a commit or a network error."""

    asked: list[tuple[str, str | None]] = []
    online = True

    def model_info(self, repo_id: str, revision: str | None = None) -> SimpleNamespace:
        FakeHub.asked.append((repo_id, revision))
        if not FakeHub.online:
            raise ConnectionError("Name or service not known")
        return SimpleNamespace(sha=COMMIT)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[FakeHub]:
    import huggingface_hub
    import huggingface_hub.constants

    FakeHub.asked, FakeHub.online = [], True
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    return FakeHub


def test_a_hub_id_is_resolved_to_its_commit(hub: type[FakeHub]) -> None:
    assert resolve_revision("org/model", None, "base_sd.pretrained") == COMMIT
    assert resolve_revision("org/model", "v1.0", "base_sd.pretrained") == COMMIT
    assert hub.asked == [("org/model", None), ("org/model", "v1.0")]


def test_a_commit_or_a_local_folder_is_kept_as_given(hub: type[FakeHub], tmp_path: Path) -> None:
    other = "f" * 40
    assert resolve_revision("org/model", other, "base_sd.pretrained") == other
    assert resolve_revision(str(tmp_path), None, "base_sd.pretrained") is None
    assert hub.asked == []


def test_offline_uses_the_cached_commit_or_fails_naming_the_param(
    hub: type[FakeHub], tmp_path: Path
) -> None:
    hub.online = False
    with pytest.raises(PipelineError, match=r"base_clip.pretrained 'org/model'.*'main'"):
        resolve_revision("org/model", None, "base_clip.pretrained")
    ref = tmp_path / "cache" / "models--org--model" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text(COMMIT + "\n")
    assert resolve_revision("org/model", None, "base_clip.pretrained") == COMMIT


def test_base_clip_records_the_commit_later_stages_load(
    hub: type[FakeHub], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(
        json.dumps(
            {"training": {"seed": 0}, "base_clip": {"pretrained": "org/clip", "revision": None}}
        )
    )
    seen = []
    monkeypatch.setattr(
        base_clip.CLIPConfig,
        "from_pretrained",
        lambda name, revision=None: seen.append((name, revision)),
    )
    base_clip.main()
    assert read_source("models/base_clip") == ("org/clip", COMMIT)
    assert seen == [("org/clip", COMMIT)]
