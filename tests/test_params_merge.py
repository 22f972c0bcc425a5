"""fashion.core.params.merged: how a profile or an override is laid onto params."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from conftest import ROOT
from fashion.core.params import merged

BASE = {
    "finetune_sd": {"lr": 1e-5, "mode": "full", "lora": {"rank": 4, "alpha": 4}},
    "generate": {"prompts": {"colors": ["red", "blue"]}, "negative": "blurry"},
    "labels": {"gender": {"0": "woman"}},
}


def test_mappings_merge_key_by_key_and_leaves_replace() -> None:
    out = merged(BASE, {"finetune_sd": {"lr": 1e-4, "lora": {"rank": 16}}})
    assert out["finetune_sd"] == {"lr": 1e-4, "mode": "full", "lora": {"rank": 16, "alpha": 4}}
    assert out["generate"] == BASE["generate"]


def test_lists_none_and_empty_mappings_replace_whole_values() -> None:
    out = merged(
        BASE,
        {"generate": {"prompts": {"colors": ["green"]}, "negative": None}, "labels": {}},
    )
    assert out["generate"] == {"prompts": {"colors": ["green"]}, "negative": None}
    assert out["labels"] == {}
    # a mapping over a scalar, and a scalar over a mapping, replace too
    out = merged(BASE, {"finetune_sd": {"mode": {"kind": "lora"}, "lora": 0}})
    assert out["finetune_sd"]["mode"] == {"kind": "lora"} and out["finetune_sd"]["lora"] == 0


def test_inputs_are_not_changed_nor_shared_with_the_result() -> None:
    base, override = copy.deepcopy(BASE), {"generate": {"prompts": {"colors": ["green"]}}}
    before = copy.deepcopy(override)
    out = merged(base, override)
    assert base == BASE and override == before
    out["generate"]["prompts"]["colors"].append("pink")
    out["finetune_sd"]["lora"]["rank"] = 64
    assert base == BASE and override == before


def test_new_keys_are_added_or_with_known_keys_only_refused_by_dotted_path() -> None:
    assert merged(BASE, {"finetune_sd": {"new": 1}})["finetune_sd"]["new"] == 1
    with pytest.raises(KeyError, match=r"unknown parameter 'finetune_sd\.lora\.rnak'"):
        merged(BASE, {"finetune_sd": {"lora": {"rnak": 8}}}, known_keys_only=True)
    known = merged(BASE, {"finetune_sd": {"lora": {"rank": 8}}}, known_keys_only=True)
    assert known["finetune_sd"]["lora"]["rank"] == 8


def test_a_round_trip_map_keeps_its_type_and_comments() -> None:
    rt = YAML()
    params = rt.load("# top comment\nsd:\n  lr: 0.1  # the rate\n  steps: 3\n")
    out = merged(params, {"sd": {"steps": 5}})
    assert type(out) is type(params)
    text = io.StringIO()
    rt.dump(out, text)
    assert text.getvalue() == "# top comment\nsd:\n  lr: 0.1  # the rate\n  steps: 5\n"


@pytest.mark.parametrize(
    "profile", sorted((ROOT / "profiles").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_profile_lays_onto_params_with_known_keys_only(profile: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    overlay = yaml.safe_load(profile.read_text()) or {}
    out = merged(params, overlay, known_keys_only=True)
    assert out.keys() == params.keys()
