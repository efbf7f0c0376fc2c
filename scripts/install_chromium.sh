#!/usr/bin/env bash
# Installs Debian's `chromium` (headless browser used by tests/test_viz_html.py to check that the HTML viewers
# written by geomot.viz render offline) when it is missing. Needs root and apt-get; otherwise prints the command.
# Exit status: 0 when chromium is available afterwards, 1 otherwise.
set -uo pipefail
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing chromium (headless browser for the HTML viewer tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends chromium >/dev/null || true
else
  echo "[setup] NOTE: chromium is missing; the HTML viewer tests will skip. Install it with: sudo apt-get install -y chromium"
fi
command -v chromium >/dev/null 2>&1
