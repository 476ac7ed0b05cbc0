"""The PyTorch RetinaFace port: parity with ONNX Runtime on the shipped export, loader refusals, dynamo export.

Tolerances: both sides compute in fp32 with different convolution orders (PyTorch's oneDNN / ONNX
Runtime's MLAS kernels, whose SIMD paths differ between Intel and AMD CPUs). Measured on an AMD EPYC
(2 cores, torch 2.13, onnxruntime 1.32), over the 4 inputs below: loc <= 8.5e-6, landmarks <= 1.5e-5
(outputs up to ~5 in magnitude), conf <= 8.4e-7 (soft-maxed: at most a quarter of the logits' error).
The bounds are ~7-12x above that.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from synthetic.faces import group_picture

from flipnet_rt.imaging.scene import ASTRONAUT_LANDMARKS
from flipnet_rt.models.retinaface import RETINAFACE_ONNX, RetinaFace, load_retinaface

OUTPUTS = ("loc", "conf", "landmarks")
TOLERANCE = {"loc": 1e-4, "conf": 1e-5, "landmarks": 1e-4}
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)


@pytest.fixture(scope="module")
def retinaface() -> RetinaFace:
    return load_retinaface()


@pytest.fixture(scope="module")
def reference():
    import onnxruntime

    return onnxruntime.InferenceSession(str(RETINAFACE_ONNX), providers=["CPUExecutionProvider"])


def anchors(height: int, width: int) -> int:
    return 2 * sum(-(-height // s) * -(-width // s) for s in (8, 16, 32))


def assert_close(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], label: str) -> None:
    for name in OUTPUTS:
        assert got[name].shape == expected[name].shape, name
        error = float(np.abs(got[name] - expected[name]).max())
        print(f"{label} {name}: max abs difference {error:.2e}")
        assert error < TOLERANCE[name], (label, name, error)


def run_torch(module: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {name: t.numpy() for name, t in zip(OUTPUTS, module(torch.from_numpy(x)))}


def group_frame() -> np.ndarray:
    """A 180x320 picture (not a multiple of 32) with the astronaut twice, as ``[1, 3, H, W]`` BGR - mean."""
    from skimage import data

    face = data.astronaut()
    picture, _ = group_picture(
        [face, face], np.random.default_rng(7), height=180, width=320, eye_distance=(24.0, 40.0),
        max_angle=10.0, landmarks=ASTRONAUT_LANDMARKS,
    )  # fmt: skip
    bgr = picture[..., ::-1].astype(np.float32) - MEAN_BGR
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None])


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (2, 3, 97, 211)])
def test_random_frames_match_onnx_runtime(retinaface, reference, shape):
    x = np.random.default_rng(sum(shape)).uniform(-123.0, 152.0, size=shape).astype(np.float32)
    expected = dict(zip(OUTPUTS, reference.run(list(OUTPUTS), {"input": x})))
    assert expected["loc"].shape == (shape[0], anchors(*shape[2:]), 4)
    assert_close(run_torch(retinaface, x), expected, f"{shape}")


def test_group_picture_matches_onnx_runtime_and_finds_the_faces(retinaface, reference):
    x = group_frame()
    expected = dict(zip(OUTPUTS, reference.run(list(OUTPUTS), {"input": x})))
    got = run_torch(retinaface, x)
    assert_close(got, expected, "group picture")
    np.testing.assert_allclose(got["conf"].sum(-1), 1.0, atol=1e-5)
    assert got["conf"][0, :, 1].max() > 0.9  # a real picture: the faces are found, not just matching noise


def test_the_module_is_a_frozen_float32_eval_module(retinaface):
    params = list(retinaface.parameters())
    assert len(params) == 2 * 56  # 56 convolutions, all biased (batch norms folded)
    assert not retinaface.training and all(p.dtype == torch.float32 and not p.requires_grad for p in params)


def _modified_copy(tmp_path, change: str):
    model = onnx.load(str(RETINAFACE_ONNX))
    inits = model.graph.initializer
    index = next(k for k, t in enumerate(inits) if t.name == "bbox_head.bbox_head.1.bias")
    if change == "shape":
        inits[index].CopyFrom(onnx.numpy_helper.from_array(np.zeros(9, np.float32), inits[index].name))
    elif change == "missing":
        del inits[index]
    else:
        inits.append(onnx.numpy_helper.from_array(np.zeros(3, np.float32), "spare"))
    path = tmp_path / f"{change}.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("shape", r"bbox_head\.bbox_head\.1\.bias: shape \(9,\), expected \(8,\)"),
        ("missing", r"bias 'bbox_head\.bbox_head\.1\.bias' is not an initializer"),
        ("unused", r"unused initializer spare"),
    ],
    ids=["shape", "missing", "unused"],
)
def test_the_loader_refuses_a_changed_graph(tmp_path, change, problem):
    path = _modified_copy(tmp_path, change)
    with pytest.raises(ValueError, match=problem) as refused:
        load_retinaface(path)
    message = str(refused.value)
    assert message.startswith(str(path)) and "\n" not in message


@pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")
def test_dynamo_export_runs_on_onnx_runtime_at_other_sizes(retinaface, tmp_path):
    import onnxruntime

    batch, hq, wq = (
        torch.export.Dim("batch", min=1, max=64),
        torch.export.Dim("hq", min=1, max=128),
        torch.export.Dim("wq", min=1, max=128),
    )
    path = tmp_path / "retinaface.onnx"
    torch.onnx.export(
        retinaface, (torch.zeros(1, 3, 64, 96),), str(path), dynamo=True, opset_version=18, input_names=["input"],
        output_names=list(OUTPUTS), dynamic_shapes={"input": {0: batch, 2: 32 * hq, 3: 32 * wq}}, verbose=False,
    )  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).uniform(-123.0, 152.0, size=(2, 3, 96, 160)).astype(np.float32)
    got = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"input": x})))
    assert got["conf"].shape == (2, anchors(96, 160), 2)
    assert_close(got, run_torch(retinaface, x), "dynamo export [2, 3, 96, 160]")
