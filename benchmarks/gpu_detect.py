"""Face detection on a GPU (issue 29, GPU check step gpu_detect): the RetinaFace network on CUDA
against MTCNN on the host, for the same frame.

* **network**: the torch RetinaFace MobileNet-0.25 (:func:`flipnet_rt.models.retinaface.load_retinaface`,
  the shipped ONNX file's weights) on CUDA, inputs already on the device (``float32 [B, 3, H, W]``, BGR
  minus the mean, :func:`flipnet_rt.faces.retinaface.preprocess`) at 736x1280 (720p; 1080p and 4K
  shrunk to the default detect size 1280) and 1088x1920 (1080p at its own size, padded to a multiple
  of 32), batch 1 and 8, fp32 and fp16 autocast; CUDA-event timed after ``--warmup`` calls, median
  of ``--iters`` calls (cuDNN's autotuner on);
* **detector**: ``RetinaFaceDetector`` with that network (host preprocessing, upload, network,
  download, host decoding and confirmation), ms a frame at 1080p and 4K (detect size 1280), fp32 and fp16;
* **MTCNN** (``load_detector("mtcnn")``, ONNX Runtime CPU, the host's cores) on the same 1080p and 4K
  frames, and the ratios MTCNN / RetinaFace (network alone, and the whole detector).

Frames: ``tests/synthetic/video.py``'s ``face_scene`` (3 astronaut heads, eye distance scaled with the
height: 40 px at 1080p) with sensor noise. Without CUDA it prints one line saying so and exits 0
(nothing to measure); printed and written (``--json``).

    PYTHONPATH=. python3 benchmarks/gpu_detect.py --json gpu_detect.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the generated frames: tests/synthetic

FRAMES = {"1080p": (1920, 1080), "4K": (3840, 2160)}  # (width, height)
INPUTS = {"736x1280": ("1080p", 1280), "1088x1920": ("1080p", None)}  # input -> (frame, detect size)


def skip_reason() -> str | None:
    try:
        import torch
    except ImportError as exc:
        return f"torch not importable ({exc}): run on the GPU machine (benchmarks/gpu_check.sh)"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA device: run on the GPU machine (benchmarks/gpu_check.sh)"
    return None


def frame(name: str) -> np.ndarray:
    from synthetic.video import face_scene, noisy

    width, height = FRAMES[name]
    scene, _ = face_scene((width, height), eye_distance=40.0 * height / 1080, faces=3)
    return noisy(scene, 3.0, np.random.default_rng(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--host-iters", type=int, default=3, help="MTCNN and whole-detector calls a frame")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason:
        print(f"gpu_detect: skipped: {reason}")
        return 0

    import torch

    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.faces.retinaface import RetinaFaceConfig, RetinaFaceDetector, preprocess
    from flipnet_rt.models.retinaface import load_retinaface

    torch.backends.cudnn.benchmark = True
    model = load_retinaface().cuda().eval()
    frames = {name: frame(name) for name in FRAMES}
    record: dict = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "commit": os.environ.get("GPU_CHECK_COMMIT", "unknown"),
        "host_cpus": os.cpu_count(),
        "network": [],
        "detector": {},
        "mtcnn_ms": {},
    }

    def forward(x: torch.Tensor, fp16: bool):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=fp16):
            return model(x)

    # the network alone, inputs on the device
    for size, (name, detect_size) in INPUTS.items():
        x1, _ = preprocess([frames[name]], detect_size)
        for batch in (1, 8):
            x = torch.from_numpy(np.repeat(x1, batch, axis=0)).cuda()
            for fp16 in (False, True):
                for _ in range(args.warmup):
                    forward(x, fp16)
                times = []
                for _ in range(args.iters):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    forward(x, fp16)
                    end.record()
                    end.synchronize()
                    times.append(start.elapsed_time(end))
                ms = statistics.median(times)
                row = {
                    "input": size,
                    "batch": batch,
                    "precision": "fp16 autocast" if fp16 else "fp32",
                    "ms_per_call": ms,
                    "ms_per_frame": ms / batch,
                }
                record["network"].append(row)
                print(f"network {size} batch {batch} {row['precision']}: {ms:.3f} ms a call, {ms / batch:.3f} a frame")

    # the whole detector (host pre- and post-processing) and MTCNN on the host, on the same frames
    def network(fp16: bool):
        def run(x: np.ndarray):
            outputs = forward(torch.from_numpy(x).cuda(), fp16)
            return [o.float().cpu().numpy() for o in outputs]

        return run

    mtcnn = load_detector("mtcnn")
    for name, image in frames.items():
        for fp16 in (False, True):
            precision = "fp16" if fp16 else "fp32"
            detector = RetinaFaceDetector(RetinaFaceConfig(), network=network(fp16))
            found = detector.detect(image)  # warm-up: this input size's kernels and priors
            ms = best_ms(detector.detect, image, args.host_iters)
            record["detector"][f"{name} {precision}"] = {"ms_per_frame": ms, "faces": len(found)}
            print(f"RetinaFace detector 1280, network on CUDA {precision}, {name}: {ms:.2f} ms, {len(found)} faces")
        found = mtcnn.detect(image)
        ms = best_ms(mtcnn.detect, image, args.host_iters)
        record["mtcnn_ms"][name] = ms
        print(f"MTCNN on the host (ONNX Runtime CPU), {name}: {ms:.1f} ms, {len(found)} faces")

    network_b1 = {
        r["precision"]: r["ms_per_frame"] for r in record["network"] if r["input"] == "736x1280" and r["batch"] == 1
    }
    record["ratio_mtcnn_over"] = {
        name: {
            "network fp32 736x1280 batch 1": record["mtcnn_ms"][name] / network_b1["fp32"],
            "detector fp32": record["mtcnn_ms"][name] / record["detector"][f"{name} fp32"]["ms_per_frame"],
            "detector fp16": record["mtcnn_ms"][name] / record["detector"][f"{name} fp16"]["ms_per_frame"],
        }
        for name in FRAMES
    }
    for name, ratios in record["ratio_mtcnn_over"].items():
        print(f"MTCNN / RetinaFace at {name}: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))
    return 0


def best_ms(call, image: np.ndarray, iters: int) -> float:
    """The fastest of ``iters`` calls ``call(image)`` (wall time, ms): host work shares the machine's cores."""
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call(image)
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


if __name__ == "__main__":
    sys.exit(main())
