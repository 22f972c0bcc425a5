#!/usr/bin/env bash
# Offline smoke run of the real path on a GPU box: stand-in models with the published
# architectures and random weights (scripts/standin_models.py), the real profile plus
# profiles/smoke.yaml, the whole pipeline stage by stage with per-stage wall time and peak
# GPU memory (bench/run_stages.py). Numbers computed with random weights are never results.
#
#   bench/gpu_smoke.sh [WHEELS_DIR]        on the offline GPU box, in a scratch copy of the
#                                          repository (params.yaml is rewritten, outputs land
#                                          in data/, models/, metrics/, plots/)
#   bench/gpu_smoke.sh --cpu [WHEELS_DIR]  the same on CPU: reduced-width stand-ins, 64 px
#                                          (profiles/smoke-cpu.yaml on top)
#   bench/gpu_smoke.sh --cpu --full ...    on CPU with the full-size stand-ins (the published
#                                          architectures at 64 px: ~20 min and ~9 GB on 2 cores)
#   bench/gpu_smoke.sh --reduced ...       reduced-width stand-ins at the GPU sizes
#   bench/gpu_smoke.sh --download-wheels DIR   on a connected machine: the wheels the box
#                                          lacks (see download_wheels), then copy DIR over
#
# The box is expected to have Python 3.12 with torch, transformers, accelerate, peft, h5py and
# torchmetrics, and numpy, scipy, pandas, matplotlib, pillow and pyyaml (in GPU images as a
# rule; EXTRA_PACKAGES="scipy pandas matplotlib pillow" adds them to the wheels, 84 MB more);
# what else the stages import is installed from WHEELS_DIR (pip --no-index).
# The project's `fashion` package is imported from stages/ (PYTHONPATH), not installed: an
# editable install would need a build backend the offline box may lack.
# Environment: PYTHON (default python3), SMOKE_REPORT (default smoke_report.md),
# SMOKE_RUNNER (auto | dvc | direct), SMOKE_REBUILD (1: build the stand-ins again),
# PIP_INSTALL_ARGS (e.g. --user on a system Python), TORCH_VERSION (download: adds the
# torchvision that matches the box's torch, for torch-fidelity, if the box lacks one),
# BOX_PYTHON (download: the box's Python version, default 3.12), EXTRA_PACKAGES (download:
# more packages, fetched with their dependencies).
set -euo pipefail

PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STANDIN=models/standin
# Import name -> pip name of what the stages need beyond the box's packages.
MODULES=(diffusers:diffusers dvclive:dvclive dvc:dvc torch_fidelity:torch-fidelity
         torchvision:torchvision pyzipper:pyzipper Cryptodome:pycryptodomex
         _zipdecrypter:fast-zip-decryption pandas:pandas matplotlib:matplotlib
         scipy:scipy PIL:pillow yaml:pyyaml ruamel.yaml:ruamel.yaml h5py:h5py
         wordcloud:wordcloud)
# Packages fetched without their dependencies (those are on the box, or come with dvc).
NO_DEPS=(diffusers torch-fidelity pyzipper pycryptodomex fast-zip-decryption wordcloud)

die() { echo "error: $*" >&2; exit 1; }

download_wheels() {  # DIR: wheels for CPython $BOX_PYTHON (3.12) on Linux x86-64
  local dir=$1 report pins
  mkdir -p "$dir"
  local target=(--no-deps --python-version "${BOX_PYTHON:-3.12}" --platform manylinux2014_x86_64
                --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
                --platform manylinux_2_34_x86_64)
  "$PYTHON" -m pip download "${target[@]}" --only-binary=:all: -d "$dir" "${NO_DEPS[@]}" \
    setuptools wheel
  if [[ -n ${TORCH_VERSION:-} ]]; then  # torch 2.N.x pairs with torchvision 0.(N+15).x
    local minor=${TORCH_VERSION#2.}; minor=${minor%%.*}
    "$PYTHON" -m pip download "${target[@]}" --only-binary=:all: -d "$dir" \
      "torchvision==0.$((minor + 15)).*"
  else
    echo "note: TORCH_VERSION unset: no torchvision (torch-fidelity needs it if the box lacks it)"
  fi
  # dvc and dvclive (dvclive imports dvc) with their dependencies: resolved here, then the
  # pins fetched for the box, as wheels where there are (hydra's antlr4 runtime is a
  # pure-Python sdist: it builds offline there with the setuptools and wheel above).
  report=$(mktemp)
  # shellcheck disable=SC2086  # one package a word
  "$PYTHON" -m pip install --dry-run --quiet --ignore-installed --report "$report" dvc dvclive \
    ${EXTRA_PACKAGES:-}
  pins=$("$PYTHON" -c 'import json, sys
for p in json.load(open(sys.argv[1]))["install"]:
    print("{name}=={version}".format(**p["metadata"]))' "$report")
  rm -f "$report"
  # shellcheck disable=SC2086  # one pin per word
  "$PYTHON" -m pip download --quiet "${target[@]}" -d "$dir" $pins
  echo "wheels in $dir: $(ls "$dir" | wc -l) files, $(du -sh "$dir" | cut -f1) in all"
}

missing_packages() {  # pip names of the MODULES this interpreter cannot import
  local entry
  for entry in "${MODULES[@]}"; do
    "$PYTHON" -c "import importlib.util as u, sys; sys.exit(u.find_spec('${entry%%:*}') is None)" \
      2>/dev/null || echo "${entry##*:}"
  done
}

has_wheel() {  # DIR PKG: a wheel (or sdist) of PKG in DIR, names compared as pip does
  local want file
  want=$(tr 'A-Z' 'a-z' <<< "$2" | sed -E 's/[-_.]+/_/g')
  for file in "$1"/*; do
    file=$(basename "$file" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g')
    [[ $file == "${want}_"[0-9]* ]] && return 0
  done
  return 1
}

install_missing() {  # [WHEELS_DIR]
  local missing absent=() pkg
  missing=$(missing_packages | tr '\n' ' ')
  [[ -z $missing ]] && return 0
  [[ -n ${1:-} ]] || die "missing packages: $missing (give a WHEELS_DIR; see --download-wheels)"
  for pkg in $missing; do has_wheel "$1" "$pkg" || absent+=("$pkg"); done
  ((${#absent[@]} == 0)) || die "$1 holds no wheel of: ${absent[*]} (on a connected" \
    "machine: EXTRA_PACKAGES=\"${absent[*]}\" bench/gpu_smoke.sh --download-wheels DIR)"
  echo "installing from $1: $missing"
  local no_deps=() with_deps=() pip_args
  read -r -a pip_args <<< "${PIP_INSTALL_ARGS:-}"  # e.g. --user, --break-system-packages
  for pkg in $missing; do
    if [[ " ${NO_DEPS[*]} torchvision " == *" $pkg "* ]]; then no_deps+=("$pkg"); else with_deps+=("$pkg"); fi
  done
  if ((${#no_deps[@]})); then
    "$PYTHON" -m pip install "${pip_args[@]}" --no-index --find-links "$1" --no-deps "${no_deps[@]}"
  fi
  if ((${#with_deps[@]})); then
    "$PYTHON" -m pip install "${pip_args[@]}" --no-index --find-links "$1" "${with_deps[@]}"
  fi
  missing=$(missing_packages | tr '\n' ' ')
  [[ -z $missing ]] || die "still missing after the install: $missing"
}

main() {
  local cpu=0 reduced=0 full=0 wheels=""
  while (($#)); do
    case $1 in
      --download-wheels) [[ -n ${2:-} ]] || die "--download-wheels DIR"; download_wheels "$2"; return ;;
      --cpu) cpu=1; reduced=1 ;;
      --reduced) reduced=1 ;;
      --full) full=1 ;;
      -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; return ;;
      -*) die "unknown option $1" ;;
      *) wheels=$(cd "$1" && pwd) ;;
    esac
    shift
  done
  cd "$ROOT"
  # scripts/ and bench/ import fashion from stages/ (stage scripts find it beside them)
  export PYTHONPATH="$ROOT/stages${PYTHONPATH:+:$PYTHONPATH}"
  # offline box: no hub look-ups or telemetry that would wait for a network timeout
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1
  install_missing "$wheels"

  ((full)) && reduced=0  # --full wins over --cpu's reduced widths, in either order
  local start=$SECONDS build_args=() profiles=(profiles/real.yaml profiles/smoke.yaml)
  ((reduced)) && build_args+=(--reduced)
  # on a CPU, accelerate launch would run each stage on one thread (OMP_NUM_THREADS=1)
  ((cpu)) && { export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)};
               build_args+=(--device cpu); profiles+=(profiles/smoke-cpu.yaml); }
  local size=full
  ((reduced)) && size=reduced
  if [[ $(cat "$STANDIN/BUILT" 2>/dev/null) == "$size" && -z ${SMOKE_REBUILD:-} ]]; then
    echo "stand-in models ($size) in $STANDIN already (SMOKE_REBUILD=1 builds them again)"
  else
    rm -f "$STANDIN/BUILT"
    "$PYTHON" scripts/standin_models.py "$STANDIN" "${build_args[@]}"
    echo "$size" > "$STANDIN/BUILT"
    echo "stand-in models built in $((SECONDS - start)) s"
  fi
  "$PYTHON" scripts/use_profile.py "${profiles[@]}"
  "$PYTHON" bench/run_stages.py --runner "${SMOKE_RUNNER:-auto}" \
    --report "${SMOKE_REPORT:-smoke_report.md}"
  echo "smoke run: $((SECONDS - start)) s from the stand-in build to the last stage"
}

main "$@"
