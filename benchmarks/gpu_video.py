"""The video path on a GPU (issue 16, GPU check step g): frames/s of ``VideoRestorer`` with the
host frame path and with the device frame path (``--frame-path device``: each frame uploaded once,
warped, restored, colour-fixed and pasted on the GPU, downloaded once), and their difference.

Engine: the demo model (``models/demo``) on the torch backend on CUDA (the lent GPU machine has
neither TensorRT nor onnxruntime-gpu; diffusers travels as a wheel, see gpu_check.sh). Detector:
MTCNN on ONNX Runtime CPU (the same for both paths). Frames: generated, ``--size`` with
``--faces`` astronaut heads at the demo model's scale (crop side = its 64 px, so every face takes
the device path) and fresh sensor noise per frame; decode and encode are left out (the same
for both paths). Needs ``flipnet_rt._native`` built with CUDA kernels (gpu_check.sh step e).

Printed and written (``--json``): frames/s of each path (best of ``--rounds``, interleaved), their
ratio, and the largest per-pixel difference between the two paths' frames (the device crops are
within 1 grey level of the host's, tests/faces/test_device_gpu.py, and the engine sees those inputs,
so the faces differ by what 1 grey level of input moves the demo model's output: reported, not bounded).

    PYTHONPATH=<dir with the CUDA-built flipnet_rt>:. python3 benchmarks/gpu_video.py --frames 60
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the generated clips: tests/synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--faces", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--backend", default="torch")
    parser.add_argument(
        "--device",
        default="cuda",
        help="cpu (with --model models/demo-onnx --backend "
        "onnxruntime): the same flow with the host kernels, to try the script without a GPU",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from synthetic.video import face_scene, noisy

    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.faces.pipeline import FaceRestorer
    from flipnet_rt.runtime.restorer import Restorer
    from flipnet_rt.video.pipeline import VideoOptions, VideoRestorer

    width, height = (int(v) for v in args.size.split("x"))
    scene, _ = face_scene((width, height), eye_distance=15.0, faces=args.faces)
    rng = np.random.default_rng(0)
    frames = [noisy(scene, 3.0, rng) for _ in range(args.frames)]
    restorer = Restorer.load(args.model, backend=args.backend, device=args.device)
    detector = load_detector("mtcnn")
    paths = {name: FaceRestorer(restorer, detector, frame_path=name) for name in ("host", "device")}
    if paths["device"].device_frames is None:
        print("the device frame path cannot run here (no CUDA kernels in flipnet_rt._native?)")
        return 1
    print(f"device kernels: {type(paths['device'].device_frames.kernels).__name__}")

    def run(name: str) -> tuple[float, list[np.ndarray]]:
        video = VideoRestorer(paths[name], VideoOptions(batch_size=args.batch_size))
        start = time.perf_counter()
        out = [f.image for f in video.restore_frames(frames)]
        restorer.backend.synchronize()
        return time.perf_counter() - start, out

    run("host"), run("device")  # warm-up: kernels, allocator, cuDNN choices
    best: dict[str, float] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    for r in range(args.rounds):
        for name in ("host", "device") if r % 2 == 0 else ("device", "host"):
            seconds, outputs[name] = run(name)
            best[name] = min(best.get(name, seconds), seconds)
    fps = {name: args.frames / s for name, s in best.items()}
    diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(outputs["host"], outputs["device"]))
    mean = float(
        np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(outputs["host"], outputs["device"])])
    )
    changed = float(np.mean([(a != f).mean() for a, f in zip(outputs["device"], frames)]))
    print(
        f"{args.size}, {args.faces} faces, {args.frames} frames, batch {args.batch_size}, {args.model.name} on "
        f"{args.backend} {args.device}: "
        f"host path {fps['host']:.1f} frames/s, device path {fps['device']:.1f} frames/s, "
        f"device/host {fps['device'] / fps['host']:.2f}x"
    )
    print(
        f"device vs host frames: max difference {diff} grey levels, mean {mean:.4f}; "
        f"{changed:.2%} of values restored (changed from the input)"
    )
    record = {
        "size": args.size,
        "faces": args.faces,
        "frames": args.frames,
        "batch_size": args.batch_size,
        "fps": fps,
        "speedup_device_over_host": fps["device"] / fps["host"],
        "max_diff_grey": diff,
        "mean_diff_grey": mean,
        "share_changed": changed,
        "engine": f"{args.model} on {args.backend} {args.device}, MTCNN on ONNX Runtime CPU",
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))
    restorer.close()
    return 0 if changed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
