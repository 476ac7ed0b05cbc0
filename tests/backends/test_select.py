"""Backend selection: auto's order over what is installed and what the artifacts allow, one-line errors.

What is "installed" and "visible" is monkeypatched (``probes.tensorrt_installed``, ``cuda_visible``,
``ort_providers``, ``torch_installed``); decisions are checked with each registry entry's ``open``
stubbed out, and the backends that can be built on a CPU are then built for real.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flipnet_rt.backends import probes, registry
from flipnet_rt.backends.registry import BackendOptions
from flipnet_rt.backends.select import BackendUnavailable, available_backends, select_backend
from flipnet_rt.config.presets import tiny
from flipnet_rt.engine.artifacts import EngineArtifacts, ModelArtifacts, open_artifacts
from flipnet_rt.engine.manifest import EngineError, Manifest, NetworkEntry, TensorRTInfo, save_prompts
from flipnet_rt.engine.spec import KVSpec, Profile, network_specs

CPU_ORT = ["AzureExecutionProvider", "CPUExecutionProvider"]
GPU_ORT = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def write_engine_dir(directory: Path, *, plans: bool = False) -> Path:
    """An engine directory for random:tiny's config without graphs (selection never opens them)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = tiny()
    config.save(directory)
    save_prompts(
        directory, {k: np.zeros((77, config.text_width), np.float32) for k in ("restore", "negative", "degrade")}
    )
    profile = Profile(B=(1, 1, 2), h=(8, 8, 8), w=(8, 8, 8))
    specs = network_specs(config, [KVSpec(0, 32)])
    manifest = Manifest(
        model_name=config.name,
        config_sha256=config.digest(),
        precision="fp32",
        opset=18,
        resolution=config.resolution,
        versions={},
        networks={n: NetworkEntry(s, profile, f"{n}.onnx", "") for n, s in specs.items()},
    )
    if plans:
        for name in specs:
            (directory / f"{name}.plan").write_bytes(b"plan")
        manifest = dataclasses.replace(
            manifest,
            tensorrt=TensorRTInfo(
                version="10.0",
                gpu="Fake GPU",
                compute_capability="9.0",
                precision="fp16",
                plans={n: f"{n}.plan" for n in specs},
                profiles={n: profile.to_dict() for n in specs},
            ),
        )
    manifest.save(directory)
    return directory


@pytest.fixture
def machine(monkeypatch):
    """Sets what this 'machine' has: machine(trt=..., gpu=..., providers=..., torch=...)."""

    def configure(
        *,
        trt: bool = False,
        gpu: bool = False,
        providers=CPU_ORT,
        torch: bool = True,
        session_providers=None,
        distributions=("onnxruntime",),
    ) -> None:
        """``session_providers``: what a created session runs on (default: CUDA when listed)."""
        monkeypatch.setattr(probes, "tensorrt_installed", lambda: trt)
        monkeypatch.setattr(probes, "cuda_visible", lambda: gpu and torch)
        monkeypatch.setattr(probes, "ort_providers", lambda: list(providers))
        monkeypatch.setattr(probes, "torch_installed", lambda: torch)
        monkeypatch.setattr(probes, "ort_distributions", lambda: list(distributions))
        running = (
            session_providers
            if session_providers is not None
            else [p for p in providers if p in ("CUDAExecutionProvider", "CPUExecutionProvider")]
        )
        monkeypatch.setattr(probes, "ort_session_providers", lambda graph, wanted: list(running))

    configure()
    return configure


@pytest.fixture
def chosen(monkeypatch):
    """Stub out opening: select_backend returns the name of the candidate it would open."""
    for entry in registry.REGISTRY:
        monkeypatch.setattr(entry, "open", lambda artifacts, options, name=entry.name: name)


@pytest.fixture
def engine_dir(tmp_path):
    return write_engine_dir(tmp_path / "engine")


@pytest.fixture
def plans_dir(tmp_path):
    return write_engine_dir(tmp_path / "planned", plans=True)


# ------------------------------------------------------------------ auto's order
@pytest.mark.usefixtures("chosen")
def test_auto_order_follows_what_is_installed_and_what_the_artifacts_allow(machine, engine_dir, plans_dir):
    machine(trt=True, gpu=True, providers=GPU_ORT)
    assert select_backend("auto", model=plans_dir) == "tensorrt"
    assert select_backend("auto", engine_dir=engine_dir) == "onnxruntime-cuda"  # no plans
    assert select_backend("auto", model="random:tiny") == "torch-cuda"
    assert select_backend("auto", engine_dir=plans_dir, device="cpu") == "onnxruntime-cpu"
    assert select_backend("auto", model="random:tiny", device="cpu") == "torch-cpu"
    machine(trt=False, gpu=True, providers=GPU_ORT)
    assert select_backend("auto", model=plans_dir) == "onnxruntime-cuda"
    machine(trt=True, gpu=True, providers=CPU_ORT)
    assert select_backend("auto", engine_dir=engine_dir) == "onnxruntime-cpu"  # CPU-only onnxruntime
    machine(trt=True, gpu=False, providers=GPU_ORT)
    assert select_backend("auto", model=plans_dir) == "onnxruntime-cpu"
    assert select_backend("auto", model="random:tiny") == "torch-cpu"
    # both artifacts: TensorRT > ORT CUDA > torch CUDA > ORT CPU
    machine(gpu=True, providers=CPU_ORT)
    assert select_backend("auto", engine_dir=engine_dir, model="random:tiny") == "torch-cuda"
    machine(gpu=False, providers=CPU_ORT)
    assert select_backend("auto", engine_dir=engine_dir, model="random:tiny") == "onnxruntime-cpu"


@pytest.mark.usefixtures("chosen")
def test_named_backends_take_their_own_candidates(machine, engine_dir, plans_dir):
    machine(trt=True, gpu=True, providers=GPU_ORT)
    assert select_backend("onnxruntime", engine_dir=plans_dir) == "onnxruntime-cuda"
    assert select_backend("onnxruntime", engine_dir=plans_dir, device="cpu") == "onnxruntime-cpu"
    assert select_backend("torch", engine_dir=engine_dir, model="random:tiny") == "torch-cuda"
    assert select_backend("tensorrt", engine_dir=plans_dir, device="cuda:1") == "tensorrt"
    machine(providers=CPU_ORT)
    assert select_backend("onnxruntime", engine_dir=engine_dir) == "onnxruntime-cpu"


# ------------------------------------------------------------------ ONNX Runtime CUDA: judged by a session
@pytest.mark.usefixtures("chosen")
def test_onnxruntime_cuda_is_judged_by_a_created_session(machine, engine_dir, caplog):
    """CUDA listed by get_available_providers() but not loaded by a session (missing cuDNN, say):
    auto falls back to the CPU with the reason logged; --backend onnxruntime --device cuda says it."""
    machine(gpu=True, providers=GPU_ORT, session_providers=["CPUExecutionProvider"], distributions=["onnxruntime-gpu"])
    with caplog.at_level("WARNING", logger="flipnet_rt.backends.registry"):
        assert select_backend("auto", engine_dir=engine_dir) == "onnxruntime-cpu"
    assert (
        "onnxruntime-gpu could not start CUDAExecutionProvider (a session runs on CPUExecutionProvider)" in caplog.text
    )
    with pytest.raises(BackendUnavailable, match=r"could not start CUDAExecutionProvider .*or use --device cpu$"):
        select_backend("onnxruntime", engine_dir=engine_dir, device="cuda")
    machine(gpu=True, providers=GPU_ORT, distributions=["onnxruntime-gpu"])  # the session runs on CUDA
    assert select_backend("auto", engine_dir=engine_dir) == "onnxruntime-cuda"


def test_the_session_probe_opens_the_smallest_graph_once(machine, engine_dir, monkeypatch, chosen):
    opened = []
    machine(gpu=True, providers=GPU_ORT, distributions=["onnxruntime-gpu"])
    monkeypatch.setattr(
        probes,
        "ort_session_providers",
        lambda graph, wanted: opened.append((graph, wanted)) or ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    for network in ("face_encoder", "unet"):  # sizes as the manifest records them
        manifest = Manifest.load(engine_dir)
        files = {
            n.onnx: {"bytes": 10 if name == network else 1000, "sha256": ""} for name, n in manifest.networks.items()
        }
        dataclasses.replace(manifest, files=files).save(engine_dir)
        for name in files:
            (engine_dir / name).write_bytes(b"x" * files[name]["bytes"])
        opened.clear()
        assert select_backend("onnxruntime", engine_dir=engine_dir, device="cuda:1") == "onnxruntime-cuda"
        assert opened == [(engine_dir / f"{network}.onnx", (("CUDAExecutionProvider", (("device_id", "1"),)),))]


@pytest.mark.usefixtures("chosen")
def test_onnxruntime_beside_onnxruntime_gpu_is_refused_with_the_fix(machine, engine_dir, caplog):
    machine(gpu=True, providers=CPU_ORT, distributions=["onnxruntime", "onnxruntime-gpu"])
    with pytest.raises(
        BackendUnavailable,
        match=r"onnxruntime and onnxruntime-gpu are both installed and overwrite "
        r"each other's files; pip uninstall -y onnxruntime onnxruntime-gpu "
        r"&& pip install onnxruntime-gpu, or use --device cpu$",
    ):
        select_backend("onnxruntime", engine_dir=engine_dir, device="cuda")
    machine(gpu=True, providers=GPU_ORT, distributions=["onnxruntime", "onnxruntime-gpu"])  # GPU files won: warn
    with caplog.at_level("WARNING", logger="flipnet_rt.backends.registry"):
        assert select_backend("onnxruntime", engine_dir=engine_dir, device="cuda") == "onnxruntime-cuda"
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in caplog.text


@pytest.mark.usefixtures("chosen")
def test_tensorrt_provider_refuses_graphs_over_2_gb(machine, engine_dir, monkeypatch):
    machine(trt=True, gpu=True, providers=GPU_ORT, distributions=["onnxruntime-gpu"])
    engine = open_artifacts(engine_dir)
    manifest = dataclasses.replace(
        engine.manifest, files={"unet.onnx": {"bytes": 900_000}, "unet.onnx.data": {"bytes": 3_400_000_000}}
    )
    assert registry.graph_bytes(dataclasses.replace(engine, manifest=manifest), "unet") == 3_400_900_000
    sizes = {"unet": 3_400_900_000}  # sd21-base's fp32 UNet is 3.5 GB
    monkeypatch.setattr(registry, "graph_bytes", lambda artifacts, network: sizes.get(network, 1000))
    with pytest.raises(
        BackendUnavailable,
        match=r"TensorRT provider cannot take unet \(3.2 GiB .* 2 GB\): build "
        r"native plans .*flipnet-rt build ENGINE_DIR, then --backend tensorrt",
    ):
        select_backend(
            "onnxruntime", engine_dir=engine_dir, device="cuda", options=BackendOptions(tensorrt_provider=True)
        )
    assert select_backend("onnxruntime", engine_dir=engine_dir, device="cuda") == "onnxruntime-cuda"  # CUDA takes it


def test_auto_falls_back_when_plans_were_built_elsewhere(machine, plans_dir, monkeypatch):
    from flipnet_rt.backends.tensorrt import TensorRTBackend

    def mismatch(self):
        raise EngineError(f"{self.directory}: plans were built for GPU A100, this machine has H100; rebuild")

    monkeypatch.setattr(TensorRTBackend, "check_compatible", mismatch)
    machine(trt=True, gpu=True, providers=CPU_ORT)
    chosen = select_backend("auto", model=plans_dir)
    assert chosen.candidate == "onnxruntime-cpu"
    with pytest.raises(EngineError, match="built for GPU A100"):
        select_backend("tensorrt", engine_dir=plans_dir)


# ------------------------------------------------------------------ errors that name the fix
@pytest.mark.parametrize(
    "kind, artifacts, setup, message",
    [
        (
            "tensorrt",
            "engine",
            dict(trt=True, gpu=True),
            r"has no TensorRT plans; build them: flipnet-rt build .*engine$",
        ),
        (
            "tensorrt",
            "plans",
            dict(trt=False, gpu=True),
            r"TensorRT is not installed: pip install 'flipnet-rt\[tensorrt\]'",
        ),
        (
            "tensorrt",
            "plans",
            dict(trt=True, gpu=False),
            r"tensorrt: no CUDA GPU is visible to torch; use --device cpu",
        ),
        (
            "tensorrt",
            "model",
            dict(trt=True, gpu=True),
            r"runs an engine directory, not the model random:tiny; create one: flipnet-rt export --model random:tiny "
            r"-o ENGINE_DIR && flipnet-rt build ENGINE_DIR",
        ),
        (
            "onnxruntime",
            "model",
            dict(),
            r"runs an engine directory, not the model random:tiny; create one: flipnet-rt export",
        ),
        (
            "torch",
            "engine",
            dict(),
            r"--backend torch runs a model directory or random:CONFIG, not the engine directory",
        ),
        (
            "torch",
            "model",
            dict(torch=False),
            r"the torch backend needs PyTorch, which is not installed: pip install "
            r"'flipnet-rt\[torch\]', or export an engine directory",
        ),
        ("auto", "model", dict(torch=False), r"pip install 'flipnet-rt\[torch\]'"),
    ],
)
def test_unavailable_backends_say_how_to_fix_it(machine, chosen, tmp_path, kind, artifacts, setup, message):
    machine(**setup)
    where = (
        {"model": "random:tiny"}
        if artifacts == "model"
        else {"engine_dir": write_engine_dir(tmp_path / "engine", plans=artifacts == "plans")}
    )
    with pytest.raises(BackendUnavailable, match=message) as info:
        select_backend(kind, **where)
    assert "\n" not in str(info.value)


@pytest.mark.usefixtures("chosen")
def test_device_and_option_errors(machine, engine_dir):
    no_cuda = (
        r"onnxruntime has no CUDAExecutionProvider \(it has AzureExecutionProvider, CPUExecutionProvider\): "
        r"pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu, or use --device cpu"
    )
    with pytest.raises(BackendUnavailable, match=no_cuda):
        select_backend("onnxruntime", engine_dir=engine_dir, device="cuda")
    with pytest.raises(BackendUnavailable, match="--backend tensorrt runs on a CUDA GPU only; drop --device cpu"):
        select_backend("tensorrt", engine_dir=engine_dir, device="cpu")
    with pytest.raises(BackendUnavailable, match="--device tpu: use auto, cpu, cuda or cuda:N"):
        select_backend("auto", engine_dir=engine_dir, device="tpu")
    with pytest.raises(BackendUnavailable, match="--backend openvino: use one of auto, tensorrt, onnxruntime, torch"):
        select_backend("openvino", engine_dir=engine_dir)
    with pytest.raises(BackendUnavailable, match="CUDA graphs need a CUDA GPU; drop --cuda-graphs"):
        select_backend("torch", model="random:tiny", options=BackendOptions(cuda_graphs=True))
    with pytest.raises(BackendUnavailable, match="no model"):
        select_backend("auto")


def test_available_backends(machine):
    machine(trt=True, gpu=True, providers=GPU_ORT)
    assert available_backends() == ["tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu", "torch-cpu"]
    machine(providers=CPU_ORT)
    assert available_backends() == ["onnxruntime-cpu", "torch-cpu"]
    machine(providers=CPU_ORT, torch=False)
    assert available_backends() == ["onnxruntime-cpu"]


def test_open_artifacts(engine_dir, tmp_path):
    engine = open_artifacts(engine_dir)
    assert isinstance(engine, EngineArtifacts) and engine.directory == engine_dir and engine.config == tiny()
    assert open_artifacts(engine) is engine
    assert isinstance(open_artifacts("random:tiny"), ModelArtifacts)  # not loaded: costs nothing yet
    assert open_artifacts(tmp_path / "model").source == tmp_path / "model"


# ------------------------------------------------------------------ built for real
def test_selected_backends_are_built(machine, engine_dir, plans_dir, tiny_model, monkeypatch):
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeCudaBackend
    from flipnet_rt.backends.tensorrt import TensorRTBackend
    from flipnet_rt.backends.torch import TorchBackend

    chosen = select_backend("auto", engine_dir=engine_dir)
    assert type(chosen.backend) is OnnxRuntimeBackend and chosen.config == tiny()
    assert set(chosen.prompts) == {"restore", "negative", "degrade"}
    chosen = select_backend("auto", model=tiny_model)
    assert isinstance(chosen.backend, TorchBackend) and chosen.backend.device.type == "cpu"
    assert chosen.prompts["restore"].shape == (77, 64)

    machine(trt=True, gpu=True, providers=GPU_ORT)  # neither constructor touches the GPU
    chosen = select_backend("auto", engine_dir=engine_dir, device="cuda:1")
    assert isinstance(chosen.backend, OnnxRuntimeCudaBackend) and chosen.backend.device == "cuda:1"
    monkeypatch.setattr(TensorRTBackend, "check_compatible", lambda self: None)
    chosen = select_backend("auto", engine_dir=plans_dir, options=BackendOptions(cuda_graphs=True))
    assert isinstance(chosen.backend, TensorRTBackend) and chosen.backend.cuda_graph


def test_engine_directories_from_another_model_are_refused(engine_dir):
    manifest = Manifest.load(engine_dir)
    dataclasses.replace(manifest, config_sha256="0" * 64).save(engine_dir)
    with pytest.raises(EngineError, match="re-export it with `flipnet-rt export"):
        select_backend("auto", engine_dir=engine_dir)


def test_choosing_an_engine_directory_on_a_cpu_imports_no_torch(engine_dir):
    if "CUDAExecutionProvider" in probes.ort_providers():
        pytest.skip("onnxruntime-gpu is installed: choosing asks torch whether a GPU is visible")
    code = (
        "import sys\nfrom flipnet_rt.backends.select import select_backend\n"
        f"chosen = select_backend('auto', engine_dir={str(engine_dir)!r})\n"
        "print(chosen.candidate, ','.join(m for m in ('torch', 'tensorrt', 'diffusers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["onnxruntime-cpu"], done.stdout + done.stderr[-500:]
