"""`flipnet-rt export-triton`: the model repository for NVIDIA's Triton container.

The container itself cannot run here. Checked instead: every config.pbtxt parses with Triton's
protobuf schema (tritonclient's model_config_pb2) and agrees with the manifest; the copied ONNX
files load; and the sampling loop on the BLS backend, its calls running the repository's own
network files on ONNX Runtime (what Triton's onnxruntime backend would run), gives the same bytes
as Restorer.restore on the engine directory.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import face_like, served

from flipnet_rt.cli.main import main
from flipnet_rt.config.options import Mode
from flipnet_rt.engine.manifest import Manifest
from flipnet_rt.serve.protocol import OPTION_INPUTS, OUTPUT_NAMES
from flipnet_rt.serve.repository import RepositoryOptions, batchable, network_batch


@pytest.fixture(scope="module")
def repo(demo_engine, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton") / "repo"
    assert main(["export-triton", str(demo_engine), "-o", str(out), "--max-batch", "4", "--instances", "2"]) == 0
    return out


def _parse(path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_network_configs_parse_and_agree_with_the_manifest(repo, demo_engine):
    from tritonclient.grpc import model_config_pb2

    manifest = Manifest.load(demo_engine)
    options = RepositoryOptions(max_batch=4, instances=2)
    for name, entry in manifest.networks.items():
        config = _parse(repo / name / "config.pbtxt")
        assert config.name == name and config.platform == "onnxruntime_onnx"
        batched = batchable(entry)
        assert config.max_batch_size == (network_batch(name, options) if batched else 0)
        assert config.HasField("dynamic_batching") == batched
        assert [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_GPU)]
        for got, spec in ((config.input, entry.spec.inputs), (config.output, entry.spec.outputs)):
            assert [t.name for t in got] == [t.name for t in spec]
            for tensor, want in zip(got, spec):
                assert model_config_pb2.DataType.Name(tensor.data_type) == {"float32": "TYPE_FP32"}[want.dtype]
                # the manifest's shape at the profile's smallest and largest batch fits the dims
                for which in (0, 2):
                    shape = want.concrete(entry.profile.env(which))
                    shape = shape[1:] if batched else shape
                    assert len(shape) == len(tensor.dims)
                    assert all(d in (-1, s) for d, s in zip(tensor.dims, shape)), (
                        name,
                        tensor.name,
                        tensor.dims,
                        shape,
                    )
        assert (repo / name / "1" / "model.onnx").is_file()
    assert not batchable(manifest.networks["unet_input"])  # phi [1] has no batch axis
    assert batchable(manifest.networks["vae_decoder"])


def test_logic_configs_take_the_serve_inputs(repo):
    from tritonclient.grpc import model_config_pb2

    for mode in Mode:
        config = _parse(repo / mode.value / "config.pbtxt")
        assert config.backend == "python" and config.max_batch_size == 4
        assert [t.name for t in config.input] == ["image", *(o.name for o in OPTION_INPUTS)]
        assert all(t.optional for t in config.input[1:]) and not config.input[0].optional
        fidelity = {t.name: t for t in config.input}["fidelity"]  # restore's; degrade refuses it itself
        assert model_config_pb2.DataType.Name(fidelity.data_type) == "TYPE_FP32" and list(fidelity.dims) == [1]
        assert list(config.input[0].dims) == [-1, -1, 3]
        assert model_config_pb2.DataType.Name(config.input[0].data_type) == "TYPE_UINT8"
        assert [t.name for t in config.output] == [OUTPUT_NAMES[mode]]
        policy = config.dynamic_batching.default_queue_policy
        assert policy.max_queue_size == 64 and policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
        assert config.parameters["mode"].string_value == mode.value
        assert (
            "from flipnet_rt.serve.triton_model import TritonPythonModel"
            in (repo / mode.value / "1" / "model.py").read_text()
        )
        assert (repo / mode.value / "1" / "engine" / "manifest.json").is_file()


def test_sampling_loop_over_the_repository_files_gives_the_restorer_bytes(repo, demo_engine):
    """BLS calls answered by ONNX Runtime sessions on REPO/<network>/1/model.onnx."""
    import onnxruntime as ort

    from flipnet_rt.runtime.restorer import Restorer
    from flipnet_rt.serve.protocol import RequestError, model_runner, run_batch
    from flipnet_rt.serve.triton_model import load_restorer

    sessions: dict[str, ort.InferenceSession] = {}
    calls: list[str] = []

    def execute(network, feeds, outputs):
        if network not in sessions:
            sessions[network] = ort.InferenceSession(
                str(repo / network / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
            )
        calls.append(network)
        return dict(zip(outputs, sessions[network].run(list(outputs), dict(feeds))))

    bls = load_restorer(repo / "restore" / "1" / "engine", execute)
    reference = Restorer.load(demo_engine, backend="onnxruntime")
    images = [face_like(64, 60), face_like(64, 61)]
    requests = [
        {
            "image": images[0][None],
            "seed": np.array([[9]], np.int64),
            "fidelity": np.array([[0.0]], np.float32),
        },  # W = 0: the restoration itself
        {"image": images[1][None], "seed": np.array([[10]], np.int64), "steps": np.array([[2]], np.int32)},
        {"image": images[1][None], "steps": np.array([[0]], np.int32)},
    ]
    answers = run_batch(requests, model_runner(bls, Mode.RESTORE), bls.options, Mode.RESTORE)
    assert {"vae_encoder", "face_encoder", "unet_cond", "unet_input", "vae_decoder"} <= set(calls)
    expected = [
        reference.restore([images[0]], reference.options(), [9])[0],
        served(reference, images[1], reference.options(steps=2), 10),
    ]
    for answer, want in zip(answers[:2], expected):
        diff = np.abs(answer["restored"][0].astype(int) - want.astype(int)).max()
        print(f"BLS loop vs Restorer: max uint8 difference {diff}")
        assert diff == 0
    # a refused request gets its own error; the others of its batch are answered
    assert isinstance(answers[2], RequestError) and "steps: 0" in str(answers[2])


def test_refusals_name_the_fix(demo_engine, tmp_path, capsys):
    assert main(["export-triton", str(demo_engine), "-o", str(tmp_path / "r"), "--platform", "tensorrt"]) == 2
    assert "flipnet-rt build" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing half-written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["export-triton", str(demo_engine), "-o", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export-triton", str(tmp_path), "-o", str(tmp_path / "r2")]) == 2
    assert "manifest.json" in capsys.readouterr().err
