#!/usr/bin/env bash
# Creates .venv and installs geomot with every extra and the dev tools.
#  - torch first: torch==2.13.0 (the local CPU wheel on our machines); an existing torch in .venv is kept,
#    and pinned while the rest installs so that no dependency replaces it with a CUDA build.
#  - the system libraries that open3d (libusb) and offscreen pyvista (OpenGL / OSMesa) need: installed with
#    apt-get when missing and running as root, otherwise the exact command is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv
TORCH_SPEC=${GEOMOT_TORCH_SPEC:-torch==2.13.0}

# --- system libraries -------------------------------------------------------------------------------
SYS_PKGS="libusb-1.0-0 libgl1 libglx-mesa0 libosmesa6 libegl1 libegl-mesa0 libxrender1 libxext6 libx11-6 libgomp1"
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $SYS_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing system libraries: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "[setup] WARNING: missing system libraries for open3d / offscreen pyvista: ${missing[*]}"
    echo "[setup] run:  sudo apt-get install -y ${missing[*]}"
  fi
fi

# headless chromium for the HTML viewer tests (tests/test_viz_html.py skip without it)
bash scripts/install_chromium.sh || true

# --- virtual environment ----------------------------------------------------------------------------
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip >/dev/null

if "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] keeping torch $("$VPY" -c 'import torch; print(torch.__version__)')"
else
  echo "[setup] installing $TORCH_SPEC"
  "$VPY" -m pip install -q "$TORCH_SPEC"
fi
TV=$("$VPY" -c 'import torch; print(torch.__version__)')
CONSTRAINTS=$(mktemp)
echo "torch==$TV" > "$CONSTRAINTS"
echo "[setup] installing geomot[all,dev] (torch pinned to $TV)"
"$VPY" -m pip install -q -c "$CONSTRAINTS" -e ".[all,dev]"
rm -f "$CONSTRAINTS"
echo "[setup] done: $("$VPY" -c 'import geomot, torch; print("geomot", geomot.__version__, "torch", torch.__version__)')"
