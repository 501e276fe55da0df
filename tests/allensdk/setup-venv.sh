#!/usr/bin/env bash
# Builds (once) the separate virtual environment in which the AllenSDK conformance test reads our NWB files.
# AllenSDK is a test tool, never a brainobs dependency: it pins numpy<1.24, so it cannot share brainobs's env.
# Pins: allensdk 2.16.2 on Python 3.11 resolves hdmf 6, which reads no file; hdmf 3.14.6 does, once pynwb's
# cached type map (built against the other hdmf) is removed.
# Usage: setup-venv.sh [DIR]  (default: $BRAINOBS_ALLENSDK_VENV or ~/.cache/brainobs/allensdk-venv).
# Prints the venv's python. Idempotent: a venv whose stamp matches the pins is reused.
set -euo pipefail
dir=${1:-${BRAINOBS_ALLENSDK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/brainobs/allensdk-venv}}
python=${ALLENSDK_PYTHON:-$(command -v python3.11 || command -v python3)}
pins="allensdk==2.16.2 hdmf==3.14.6"
stamp="$dir/.brainobs-pins"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pins" ] && [ -x "$dir/bin/python" ]; then
  echo "$dir/bin/python"
  exit 0
fi
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"AllenSDK 2.16.2 needs Python 3.11, not {sys.version}"'
rm -rf "$dir.tmp"
"$python" -m venv "$dir.tmp" >&2
# shellcheck disable=SC2086
"$dir.tmp/bin/python" -m pip install --quiet $pins >&2
rm -f "$dir.tmp"/lib/python3*/site-packages/pynwb/core_typemap.pkl
"$dir.tmp/bin/python" -c "import allensdk.brain_observatory.behavior.behavior_ophys_experiment" >&2
echo "$pins" >"$dir.tmp/.brainobs-pins"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
echo "$dir/bin/python"
