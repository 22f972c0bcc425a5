"""Apply a params profile (an overlay such as `profiles/real.yaml`) onto `params.yaml`.

Only the keys the profile names change; comments and order of `params.yaml` are kept,
so `dvc params diff` shows exactly what the profile changed. Extra `key=value`
settings (dotted keys, YAML values) are applied after the profiles, e.g.

    python scripts/use_profile.py profiles/real.yaml "benchmark.root=/data/fashion-synthesis"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

from fashion.core.params import merged
from fashion.core.params_model import ParamsError, check_params


def setting(text: str) -> dict[str, Any]:
    """'a.b.c=value' -> {'a': {'b': {'c': value}}} with the value parsed as YAML."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got '{text}'")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw else ""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def represent_float(representer: Any, value: float) -> Any:
    """1e-05 is a string to YAML 1.1 readers (PyYAML, DVC): always write a mantissa dot."""
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        text = text.replace("e", ".0e", 1)
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overlays", nargs="+", help="profile files, then key=value settings")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    rt = YAML()  # round-trip: keeps comments and key order
    rt.preserve_quotes = True
    rt.width = 100
    rt.representer.add_representer(  # keep `null` rather than an empty value
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    rt.representer.add_representer(float, represent_float)
    params = rt.load(args.params.read_text())
    for item in args.overlays:
        try:
            if Path(item).suffix in (".yaml", ".yml") and "=" not in item:
                overlay = yaml.safe_load(Path(item).read_text()) or {}
            else:
                overlay = setting(item)
            params = merged(params, overlay, known_keys_only=True)
        except (OSError, KeyError, argparse.ArgumentTypeError, yaml.YAMLError) as err:
            print(f"error: {item}: {err}", file=sys.stderr)
            return 1
    try:  # the result as the stages will check it: nothing written if a value is bad
        check_params(params, f"{args.params} with {' '.join(args.overlays)}", complete=True)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with args.params.open("w") as f:
        rt.dump(params, f)
    print(f"updated {args.params}; see the change with `dvc params diff`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
