"""The engine directory's ``manifest.json`` (DESIGN §4), torch-free.

An engine directory holds ``manifest.json``, the model's ``flipnet.json``, ``prompts.npz`` (the
fixed prompts' embeddings), one ``<network>.onnx`` per network (weights as external data in
``<network>.onnx.data`` when the graph is large) and, after ``flipnet-rt build``, ``<network>.plan``
TensorRT plans. The manifest records what produced every file, so that a runtime can refuse
files that do not belong together, saying how to rebuild them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config.model import FlipnetConfig
from .spec import NetworkSpec, Profile

MANIFEST_NAME = "manifest.json"
PROMPTS_NAME = "prompts.npz"
FORMAT_VERSION = 1


class EngineError(ValueError):
    """An engine directory that cannot be used; the message says how to fix or rebuild it."""


@dataclass(frozen=True)
class NetworkEntry:
    spec: NetworkSpec
    profile: Profile
    onnx: str
    weights_sha256: str


@dataclass(frozen=True)
class TensorRTInfo:
    """What a set of plans was built for; a plan only runs where all of it matches."""

    version: str
    gpu: str
    compute_capability: str
    precision: str
    plans: dict[str, str]
    profiles: dict[str, dict[str, list[int]]]
    strongly_typed: bool = False  # TensorRT 11.x: the plans have their ONNX graphs' precision
    tf32: bool = False  # fp32 layers may use TF32 tensor cores (export/tensorrt_build.py)


@dataclass(frozen=True)
class Manifest:
    model_name: str
    config_sha256: str
    precision: str  # "fp32" | "fp16"
    opset: int
    resolution: int
    networks: dict[str, NetworkEntry]
    versions: dict[str, str]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"bytes", "sha256"}
    tensorrt: TensorRTInfo | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ checks
    def check_model(self, config: FlipnetConfig, directory: Path | str = "") -> None:
        """Refuse an engine directory exported from another model configuration."""
        if config.digest() != self.config_sha256:
            raise EngineError(
                f"{directory}: exported from model config {self.model_name} ({self.config_sha256[:12]}), "
                f"not from this model ({config.name}, {config.digest()[:12]}); re-export it with "
                f"`flipnet-rt export --model <model> -o {directory or 'ENGINE_DIR'}`"
            )

    def check_tensorrt(self, directory: Path | str, *, version: str, gpu: str, compute_capability: str) -> None:
        """Refuse plans built for another GPU or TensorRT version, naming the mismatch and the fix."""
        rebuild = f"rebuild them here: `flipnet-rt build {directory}`"
        if self.tensorrt is None:
            raise EngineError(f"{directory}: has no TensorRT plans; {rebuild}")
        built = self.tensorrt
        for what, theirs, ours in (
            ("TensorRT version", built.version, version),
            ("GPU", built.gpu, gpu),
            ("compute capability", built.compute_capability, compute_capability),
        ):
            if theirs != ours:
                raise EngineError(
                    f"{directory}: plans were built for {what} {theirs}, this machine has {ours}; {rebuild}"
                )

    def check_files(self, directory: Path) -> None:
        """Every recorded file exists inside the directory with its recorded size (cheap; no hashing).

        ONNX external data is resolved by the runtime relative to the model file, so a file that
        is missing, outside the directory or of the wrong size is refused before any is opened.
        """
        root = Path(directory).resolve()
        for name, info in self.files.items():
            path = (root / name).resolve()
            if root not in path.parents:
                raise EngineError(f"{directory}/{name}: points outside the engine directory; refusing it")
            if not path.is_file():
                raise EngineError(f"{path}: missing; re-export the engine directory")
            if path.stat().st_size != int(info["bytes"]):
                raise EngineError(
                    f"{path}: {path.stat().st_size} bytes, the manifest says {info['bytes']}; "
                    f"the file is truncated or from another export; re-export"
                )

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "model": {"name": self.model_name, "config_sha256": self.config_sha256},
            "precision": self.precision,
            "opset": self.opset,
            "resolution": self.resolution,
            "networks": {
                name: {
                    "onnx": e.onnx,
                    "weights_sha256": e.weights_sha256,
                    "profile": e.profile.to_dict(),
                    **e.spec.to_dict(),
                }
                for name, e in self.networks.items()
            },
            "versions": dict(self.versions),
            "files": dict(self.files),
            "tensorrt": None if self.tensorrt is None else vars(self.tensorrt),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = MANIFEST_NAME) -> Manifest:
        try:
            if data.get("format_version") != FORMAT_VERSION:
                raise EngineError(
                    f"{source}: format_version {data.get('format_version')} is not {FORMAT_VERSION}; "
                    f"re-export with this flipnet-rt"
                )
            networks = {
                name: NetworkEntry(
                    NetworkSpec.from_dict(name, entry),
                    Profile.from_dict(entry["profile"]),
                    str(entry["onnx"]),
                    str(entry["weights_sha256"]),
                )
                for name, entry in data["networks"].items()
            }
            trt = data.get("tensorrt")
            return cls(
                model_name=str(data["model"]["name"]),
                config_sha256=str(data["model"]["config_sha256"]),
                precision=str(data["precision"]),
                opset=int(data["opset"]),
                resolution=int(data["resolution"]),
                networks=networks,
                versions=dict(data["versions"]),
                files=dict(data.get("files", {})),
                tensorrt=None if trt is None else TensorRTInfo(**trt),
                extra=dict(data.get("extra", {})),
            )
        except EngineError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"{source}: malformed manifest ({type(exc).__name__}: {exc}); re-export") from None

    def save(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        _atomic_write(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = Path(directory) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise EngineError(
                f"{path}: not found; create an engine directory with `flipnet-rt export --model DIR -o {directory}`"
            ) from None
        except json.JSONDecodeError as exc:
            raise EngineError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, str(path))


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_prompts(directory: Path, prompts: Mapping[str, np.ndarray]) -> None:
    """The fixed prompts' embeddings, ``[77, D]`` each, as a plain (pickle-free) npz."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in prompts.items()}
    np.savez(Path(directory) / PROMPTS_NAME, **arrays)  # type: ignore[arg-type]  # numpy's stub matches **kwds to allow_pickle


def load_prompts(directory: Path) -> dict[str, np.ndarray]:
    path = Path(directory) / PROMPTS_NAME
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise EngineError(f"{path}: missing; re-export the engine directory") from None
    except ValueError as exc:
        raise EngineError(f"{path}: unreadable ({exc}); re-export the engine directory") from None
