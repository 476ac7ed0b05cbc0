"""The fidelity estimator as a network of the model (issue 25): stored in the model directory, run by
the torch backend, exported with its NetworkSpec into the engine and run by ONNX Runtime alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flipnet_rt.engine.manifest import Manifest
from flipnet_rt.models import load_model_dir, random_model, save_model_dir
from flipnet_rt.models.fidelity import FidelityNet


@pytest.fixture(scope="module")
def tiny_with_fidelity():
    model = random_model("tiny")
    torch.manual_seed(3)
    model.fidelity = FidelityNet()
    return model


def _pair(r: int, batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (batch, 3, r, r)).astype(np.float32)
    return {
        "image": image,
        "restored": np.clip(image + 0.1 * rng.standard_normal(image.shape), -1, 1).astype(np.float32),
    }


def test_the_estimator_gives_one_weight_in_0_1_per_face():
    net = FidelityNet().eval()
    feeds = {k: torch.from_numpy(v) for k, v in _pair(64, 5).items()}
    w = net(feeds["image"], feeds["restored"])
    assert w.shape == (5,) and bool(((w >= 0) & (w <= 1)).all())
    params = sum(p.numel() for p in net.parameters())
    print(f"FidelityNet: {params} weights")
    assert params < 100_000


def test_model_directory_round_trip_keeps_the_estimator(tmp_path, tiny_with_fidelity):
    from flipnet_rt.backends.torch import TorchBackend

    save_model_dir(tiny_with_fidelity, tmp_path / "m")
    assert (tmp_path / "m" / "fidelity.safetensors").is_file()
    loaded = load_model_dir(tmp_path / "m")
    assert loaded.fidelity is not None
    for a, b in zip(loaded.fidelity.state_dict().values(), tiny_with_fidelity.fidelity.state_dict().values()):
        assert torch.equal(a, b)
    assert "fidelity" in TorchBackend(loaded).specs
    assert "fidelity" not in TorchBackend(random_model("tiny")).specs  # no estimator, no network


def test_export_and_onnx_runtime_parity(tmp_path, tiny_with_fidelity):
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeBackend
    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.export.exporter import export_engine

    out = tmp_path / "engine"
    export_engine(tiny_with_fidelity, out, max_batch=4, networks=["fidelity"])
    manifest = Manifest.load(out)
    spec = manifest.networks["fidelity"].spec
    assert spec.input_names == ["image", "restored"] and spec.output_names == ["weight"]
    r = tiny_with_fidelity.config.resolution
    feeds = _pair(r)
    ours = OnnxRuntimeBackend(out, manifest).run("fidelity", feeds)["weight"]
    torch_backend = TorchBackend(tiny_with_fidelity)
    ref = torch_backend.to_numpy(
        torch_backend.run("fidelity", {k: torch.from_numpy(v) for k, v in feeds.items()})["weight"]
    )
    err = float(np.abs(np.asarray(ours) - ref).max())
    print(f"fidelity ONNX Runtime vs torch: max |error| {err:.2e} (weights {ref})")
    assert ours.shape == (3,) and err <= 1e-5  # fp32 on both; a few ulps of reordered sums


def test_exporting_an_estimator_the_model_lacks_is_refused(tmp_path):
    from flipnet_rt.export.exporter import export_engine

    with pytest.raises(ValueError, match="no fidelity estimator .*flipnet-train fidelity"):
        export_engine(random_model("tiny"), tmp_path / "e", networks=["fidelity"])
