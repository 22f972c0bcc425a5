"""fashion.core.environment: what a metrics file records about the machine that made it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fashion.core.environment import cpu_model_and_flags, environment

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni sha_ni

processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni sha_ni
"""


def test_the_cpu_model_and_its_isa_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    model, flags = cpu_model_and_flags(tmp_path / "cpuinfo")
    assert model == "AMD EPYC 9R14 96-Core Processor"
    assert flags == ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]  # no AMX here


def test_the_block_names_the_versions_device_and_isa_caps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    block = environment("cpu")
    assert block["versions"]["torch"] == torch.__version__
    assert all(block["versions"][name] for name in ("diffusers", "transformers", "accelerate"))
    assert block["device"] == "cpu" and block["isa_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    assert block["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
