"""``flipnet-rt info``: what is installed, what hardware is visible, what a model is."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

from .. import __version__

PACKAGES = (
    "numpy",
    "onnxruntime",
    "Pillow",
    "torch",
    "diffusers",
    "peft",
    "safetensors",
    "transformers",
    "onnx",
    "tensorrt",
    "polygraphy",
)


def environment() -> dict[str, str]:
    """Versions and devices, as strings (absent packages say so)."""
    env = {
        "flipnet-rt": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
    }
    for name in PACKAGES:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = "not installed"
    try:
        import onnxruntime

        env["onnxruntime providers"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        pass
    if env["torch"] != "not installed":
        import torch

        env["torch threads"] = str(torch.get_num_threads())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env["cuda device"] = f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.1f} GiB)"
            env["cuda"] = str(torch.version.cuda)
        else:
            env["cuda device"] = "none visible"
    from ..backends.select import available_backends

    env["backends"] = ", ".join(available_backends()) + " (auto's order; tensorrt/onnxruntime run engine directories)"
    return env


def engine_summary(spec: str) -> dict[str, str]:
    """An engine directory, read without torch: its model config, precision, networks and files."""
    from ..engine.artifacts import open_engine

    engine = open_engine(spec)
    c, m = engine.config, engine.manifest
    size = sum(int(f["bytes"]) for f in m.files.values())
    plans = f"{len(m.tensorrt.plans)} for {m.tensorrt.gpu} (TensorRT {m.tensorrt.version})" if m.tensorrt else "none"
    return {
        "model": spec,
        "engine": f"exported from {m.model_name} ({m.config_sha256[:16]}), {m.precision}, opset {m.opset}",
        "config": c.name,
        "resolution": f"{c.resolution}x{c.resolution} (latent {c.latent_channels}x{c.latent_size}x{c.latent_size})",
        "networks": ", ".join(m.networks),
        "files": f"{len(m.files)} ({size / 2**20:.1f} MiB)",
        "tensorrt plans": plans,
        "context": f"{c.text_tokens} text + {c.face.tokens} id tokens of width {c.text_width}",
        "prediction": c.schedule.prediction_type.value,
        "defaults": ", ".join(f"{k}={v}" for k, v in c.to_dict()["defaults"].items()),
    }


def model_summary(spec: str) -> dict[str, str]:
    from ..engine.artifacts import is_engine_dir

    if is_engine_dir(spec):
        return engine_summary(spec)
    from ..models import load_model

    model = load_model(spec)
    c = model.config

    def millions(module) -> str:
        return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M"

    hubs = model.unet.boosthubs
    return {
        "model": spec,
        "config": c.name,
        "resolution": f"{c.resolution}x{c.resolution} (latent {c.latent_channels}x{c.latent_size}x{c.latent_size})",
        "unet (with BoostHub)": millions(model.unet),
        "boosthub layers": f"{len(hubs)} ({sum(p.numel() for h in hubs for p in h.parameters()) / 1e6:.2f}M)",
        "vae": millions(model.vae),
        "face encoder + adapter": millions(model.face),
        "context": f"{c.text_tokens} text + {c.face.tokens} id tokens of width {c.text_width}",
        "prediction": c.schedule.prediction_type.value,
        "defaults": ", ".join(f"{k}={v}" for k, v in c.to_dict()["defaults"].items()),
        "config sha256": c.digest()[:16],
    }


def run(spec: str | None) -> int:
    rows = environment()
    if spec:
        try:
            rows.update(model_summary(spec))
        except (OSError, ValueError, KeyError, ImportError) as exc:
            print(f"error: --model {spec}: {exc}", file=sys.stderr)
            return 2
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    return 0
