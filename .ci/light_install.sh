#!/usr/bin/env bash
# The light runtime (issue 5): `pip install flipnet-rt` with no extras, in a fresh venv, restores
# with an exported engine directory on the CPU, and torch is not even installed.
# Needs .venv from `make test` (to export the engine). Usage: bash .ci/light_install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/flipnet-rt export --model random:tiny -o "$work/engine" --max-batch 1 > /dev/null
python3 -m venv "$work/venv"
FLIPNET_CUDA=OFF "$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check .
if "$work/venv/bin/python" -c "import torch" 2> /dev/null; then
    echo "light install: torch is installed, but the core install must not pull it" >&2
    exit 1
fi
"$work/venv/bin/python" - "$work/face.png" <<'PY'
import sys
import numpy as np
from PIL import Image
yy, xx = np.mgrid[0:96, 0:96] / 95
img = np.stack([0.3 + 0.4 * xx, 0.3 + 0.3 * yy, 0.5 - 0.2 * xx], -1)
Image.fromarray((img * 255).astype(np.uint8)).save(sys.argv[1])
PY
"$work/venv/bin/flipnet-rt" restore "$work/face.png" -o "$work/out" --model "$work/engine" --steps 2 --aligned
test -s "$work/out/face.png"
# whole images (the default): the engine's detector network (RetinaFace) and OpenCV run with the core install
"$work/venv/bin/flipnet-rt" restore "$work/face.png" -o "$work/whole" --model "$work/engine" --steps 2
test -s "$work/whole/face.png"
echo "light install: restored $work/face.png with the core install only (no torch)"
