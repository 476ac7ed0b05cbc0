"""Frame-to-frame on the device (issue 17, GPU check step f): decode on the host, then warp-crop ->
engine -> paste on the GPU with CuPy arrays, against the host pipeline; ms per frame for both.

Needs a GPU, CuPy, the native module built with CUDA kernels (``flipnet_rt._native`` with
``warp_crop_cuda`` / ``paste_faces_cuda``) and torch. The engine is the **TensorRT backend on CuPy
arrays over the test double of TensorRT** (tests/backends/test_tensorrt_double_gpu.py: the torch
networks of ``random:tiny`` run at the backend's bound addresses on its stream), because the lent
GPU machine has neither TensorRT nor onnxruntime-gpu; the backend's buffers, stream and CuPy
arrays are the product's. A 1080p synthetic frame is JPEG-encoded once and decoded per frame.

Checks, each printed with its measured error (bound: 1 grey level, the native kernels' parity):
1. the device crops vs the host crops (``flipnet_rt.imaging.kernels.warp_crop``);
2. the device frame vs the host pipeline fed the same crops (the engine is deterministic; what
   differs is to_uint8 and paste-back on the device vs the host).
Exit status 0 when both hold, 1 otherwise.

    PYTHONPATH=<dir with the CUDA-built flipnet_rt>:. python3 benchmarks/gpu_device_pipeline.py --frames 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def scene(faces: int, size: int, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """A 1080p frame (JPEG bytes) and ``faces`` frame->crop affines ``[N, 2, 3]`` of side ``size``."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:1080, 0:1920]
    frame = np.stack(
        [(xx * 0.25 + yy * 0.5) % 256, np.sin(xx / 23.0) * 90 + 128, rng.integers(0, 256, (1080, 1920))], -1
    ).astype(np.uint8)
    mats = []
    for i in range(faces):
        centre = (300 + 600 * i % 1500, 300 + 250 * i % 600)
        m = cv2.getRotationMatrix2D(centre, rng.uniform(-30, 30), size / 260.0)
        m[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
        mats.append(m)
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return jpeg.tobytes(), np.ascontiguousarray(np.stack(mats))


def engine(directory: Path):
    """(core, backend, model): the TensorRT backend on CuPy arrays over the torch double."""
    import torch  # noqa: F401 (the double's networks)

    sys.path.insert(0, str(ROOT / "tests"))
    from backends.test_tensorrt_double_gpu import _engine_dir, torch_tensorrt_double

    from flipnet_rt.backends.tensorrt import TensorRTBackend
    from flipnet_rt.engine.spec import KVSpec, network_specs
    from flipnet_rt.models import PROMPT_KINDS, random_model
    from flipnet_rt.models.networks import kv_layout
    from flipnet_rt.runtime.core import DiffusionCore

    model = random_model("tiny").to("cuda").eval().requires_grad_(False)
    kv = [KVSpec(layer.level, layer.channels) for layer in kv_layout(model)]
    sys.modules["tensorrt"] = torch_tensorrt_double(model, network_specs(model.config, kv))
    manifest = _engine_dir(directory, model, kv)
    backend = TensorRTBackend(directory, manifest, arrays="cupy")
    prompts = {k: model.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS}
    return DiffusionCore(backend, model.config, prompts), backend, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--faces", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import tempfile

    import cupy as cp
    import cv2

    from flipnet_rt.config.options import Mode, SamplingOptions
    from flipnet_rt.faces import kernels
    from flipnet_rt.imaging import native
    from flipnet_rt.imaging.tensor import to_uint8

    nat = native.module()
    if nat is None or not getattr(nat, "cuda", False):
        print("flipnet_rt._native has no CUDA kernels: build with FLIPNET_CUDA=ON (gpu_check.sh step e)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        core, backend, model = engine(Path(tmp))
        size = model.config.resolution
        options = SamplingOptions.from_config(model.config, steps=args.steps)
        jpeg, mats = scene(args.faces, size)
        seeds = list(range(args.faces))
        code, value = kernels.border_args("reflect")
        stream = backend.arrays.new_stream()  # the pipeline's own stream, ordered with the backend's by events

        def device_frame() -> tuple[np.ndarray, np.ndarray]:
            frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)  # host decode
            with stream:
                target = cp.asarray(frame)
                crops = cp.empty((len(mats), 3, size, size), cp.float32)
                nat.warp_crop_cuda(target, mats, crops, code, value, stream.handle)
            latents = core.generate(crops, Mode.RESTORE, options, seeds)
            image = backend.run("vae_decoder", {"latent": latents})["image"]
            with stream:
                faces = cp.ascontiguousarray(
                    cp.rint((cp.clip(image, -1, 1) + 1) * 127.5).astype(cp.uint8).transpose(0, 2, 3, 1)
                )
                nat.paste_faces_cuda(target, faces, mats, stream.handle)
            stream.synchronize()
            return cp.asnumpy(target), cp.asnumpy(crops)

        def host_frame(crops: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if crops is None:
                crops = kernels.warp_crop(frame, list(mats), size, "reflect")
            faces = to_uint8(core.run_host(crops, Mode.RESTORE, options, seeds))
            return kernels.paste_faces(frame, list(faces), list(mats)), crops

        device_out, device_crops = device_frame()  # warm-up (kernels, buffers)
        host_crops = host_frame()[1]
        crop_err = float(np.abs(device_crops - host_crops).max()) * 127.5
        same_crops_out = host_frame(device_crops)[0]
        diff = np.abs(device_out.astype(int) - same_crops_out.astype(int))
        print(f"crops on the device vs the host: max error {crop_err:.3f} grey levels")
        print(
            f"frame (device warp -> engine -> paste) vs the host pipeline on the same crops: max error "
            f"{diff.max()} grey levels, {np.mean(diff > 0):.2e} of values differ"
        )

        timings = {}
        for name, run in (("device", device_frame), ("host", host_frame)):
            start = time.perf_counter()
            for _ in range(args.frames):
                run()
            timings[name] = (time.perf_counter() - start) * 1000 / args.frames
        print(
            f"ms per frame ({args.faces} faces, {args.steps} steps, 1080p, random:tiny at {size} px, one run): "
            f"device {timings['device']:.1f}, host {timings['host']:.1f}, host/device "
            f"{timings['host'] / timings['device']:.2f}x"
        )
        record = {
            "crop_error_grey": crop_err,
            "frame_error_grey": int(diff.max()),
            "ms_per_frame": timings,
            "faces": args.faces,
            "steps": args.steps,
            "frames": args.frames,
            "engine": "TensorRT backend on CuPy arrays over the torch TensorRT double (random:tiny)",
        }
        if args.json:
            args.json.write_text(json.dumps(record, indent=2))
        backend.close()
    return 0 if crop_err <= 1.0 + 1e-4 and diff.max() <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
