"""What a backend tells the layers above it (flipnet_rt.backends.base.Backend): its arrays'
library and device (``array_kind``) and the ONNX Runtime providers of a session beside it
(``onnx_providers``), read without allocating anything or opening a session."""

from __future__ import annotations

from pathlib import Path

import pytest

from flipnet_rt.backends import probes
from flipnet_rt.backends.base import ArrayKind
from flipnet_rt.backends.onnxruntime import CUDA_PROVIDER, TENSORRT_PROVIDER, OnnxRuntimeBackend, OnnxRuntimeCudaBackend
from flipnet_rt.engine.artifacts import read_manifest
from flipnet_rt.faces.onnx_session import CPU, providers_like

DEMO_ENGINE = Path(__file__).resolve().parents[2] / "models" / "demo-onnx"


@pytest.fixture(scope="module")
def manifest():
    if not (DEMO_ENGINE / "manifest.json").is_file():
        pytest.skip(f"{DEMO_ENGINE}: the demo engine is not here")
    return read_manifest(DEMO_ENGINE)


def test_host_and_torch_backends_say_their_arrays(manifest, tiny_restorer):
    cpu = OnnxRuntimeBackend(DEMO_ENGINE, manifest)
    assert cpu.array_kind == ArrayKind("numpy", "cpu") == ArrayKind()
    assert tiny_restorer.backend.array_kind == ArrayKind("torch", "cpu")
    assert cpu.onnx_providers == () == tiny_restorer.backend.onnx_providers
    assert providers_like(cpu) == CPU == providers_like(tiny_restorer.backend) == providers_like(None)


def test_onnxruntime_names_only_its_cuda_provider(manifest):
    given = [(CUDA_PROVIDER, {"device_id": "0"}), "CPUExecutionProvider"]
    assert OnnxRuntimeBackend(DEMO_ENGINE, manifest, providers=given).onnx_providers == (CUDA_PROVIDER,)
    assert providers_like(OnnxRuntimeBackend(DEMO_ENGINE, manifest, providers=[CUDA_PROVIDER])) == (CUDA_PROVIDER, *CPU)


def test_onnxruntime_cuda_keeps_the_detector_off_tensorrt(manifest, monkeypatch):
    monkeypatch.setattr(probes, "ort_providers", lambda: [TENSORRT_PROVIDER, CUDA_PROVIDER, "CPUExecutionProvider"])
    cuda = OnnxRuntimeCudaBackend(DEMO_ENGINE, manifest, device=1)
    assert cuda.onnx_providers == (CUDA_PROVIDER,)
    assert OnnxRuntimeCudaBackend(DEMO_ENGINE, manifest, tensorrt_provider=True).onnx_providers == ()
