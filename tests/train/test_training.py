"""The training stages on the tiny config (CPU, 64x64, a few steps each).

Each stage overfits one fixed batch (fixed noise, timesteps and drops: the per-step generator and
the data order are pinned), resume continues bitwise, checkpoints hold no pickle, only LoRA +
BoostHub + tau train in restoration mode, merge output restores through `flipnet-rt`, and
missing paths name the option that sets them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import face_like, tiny_clip_folder
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import flipnet_rt.train.loop as loop
from flipnet_rt.train.ae import train_ae
from flipnet_rt.train.cli import main as train_main
from flipnet_rt.train.config import (
    AeTrainConfig,
    DegradationTrainConfig,
    RestorationTrainConfig,
    VaeTrainConfig,
    apply_overrides,
    check,
)
from flipnet_rt.train.loop import Batch, make_accelerator
from flipnet_rt.train.restoration import DiffusionStage, train_diffusion
from flipnet_rt.train.stream import RunOrder
from flipnet_rt.train.vae import train_vae
from flipnet_rt.train.vgg import VGG19Features

R = 64


class GeneratedPairs:
    """A dataset following flipnet_rt.train.data's item contract: generated faces, fixed LQ (4x down/up)."""

    def __init__(self, n: int, caption: str = "") -> None:
        self.resolution = R
        self.items = []
        for i in range(n):
            hq = face_like(R, seed=i)
            small = Image.fromarray(hq).resize((R // 4, R // 4), Image.Resampling.BICUBIC)
            lq = np.asarray(small.resize((R, R), Image.Resampling.BICUBIC))
            self.items.append(
                {
                    "hq": hq,
                    "lq": lq,
                    "caption": caption,
                    "face": True,
                    "source": f"generated/{i}.png",
                    "degradation": None,
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])

    def set_epoch(self, epoch: int) -> None:
        pass


def _config(cls, out: Path, **overrides):
    base = {
        "run.output_dir": str(out),
        "run.steps": 3,
        "run.batch_size": 2,
        "run.num_workers": 0,
        "run.checkpoint_every": 1000,
        "run.log_every": 1,
        "optim.lr": 1e-3,
    }
    if cls is AeTrainConfig:
        base.update({"ae.perceptual_weight": 0.0, "ae.disc_channels": 8, "ae.disc_layers": 2})
    if cls in (RestorationTrainConfig, DegradationTrainConfig):
        section = "restoration" if cls is RestorationTrainConfig else "degradation"
        base.update({f"{section}.lora_rank": 4})
        if cls is RestorationTrainConfig:
            base["restoration.perceptual_weight"] = 0.0
    base.update(overrides)
    return check(apply_overrides(cls(), base))


@pytest.fixture
def fixed_draws(monkeypatch):
    """Every step sees the same batch, noise, timesteps and drops: a fixed problem to overfit."""
    monkeypatch.setattr(loop, "step_generator", lambda seed, step, micro, rank: torch.Generator().manual_seed(1234))
    monkeypatch.setattr(RunOrder, "permutation", lambda self, epoch: np.arange(self.n))


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """Random VGG19 weights up to relu2_2 (real ImageNet weights are not available offline)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = VGG19Features(["relu1_2", "relu2_2"]).state_dict()
    path = tmp_path_factory.mktemp("vgg") / "vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _three_steps(kind: str, out: Path, **overrides):
    """3 steps (checkpoints at 2 and 3) on 5 items at batch 2, so steps straddle epochs."""
    cls = {"vae": VaeTrainConfig, "ae": AeTrainConfig, "restoration": RestorationTrainConfig}[kind]
    config = _config(cls, out, **{"run.steps": 3, "run.checkpoint_every": 2, **overrides})
    train = {"vae": train_vae, "ae": train_ae, "restoration": train_diffusion}[kind]
    return lambda resume=None: train(config, dataset=GeneratedPairs(5), resume=resume, progress=False)


@pytest.fixture(scope="module")
def vae_result(tmp_path_factory):
    return _three_steps("vae", tmp_path_factory.mktemp("vae"))()


@pytest.fixture(scope="module")
def ae_rec_result(tmp_path_factory):
    return _three_steps("ae", tmp_path_factory.mktemp("ae-rec"))()


@pytest.fixture(scope="module")
def vae_run(vae_result) -> Path:
    return vae_result.output_dir


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory, ae_rec_result) -> Path:
    out = tmp_path_factory.mktemp("ae-asso")
    config = _config(
        AeTrainConfig, out, **{"run.steps": 1, "ae.stage": "association", "ae.init": str(ae_rec_result.output_dir)}
    )
    train_ae(config, dataset=GeneratedPairs(4), progress=False)
    return out


@pytest.fixture(scope="module")
def restoration_result(tmp_path_factory, vae_run, ae_run):
    out = tmp_path_factory.mktemp("restoration")
    return _three_steps(
        "restoration", out, **{"restoration.vae_checkpoint": str(vae_run), "restoration.ae_checkpoint": str(ae_run)}
    )()


def _restoration(out: Path, vae_run: Path, ae_run: Path, **overrides) -> RestorationTrainConfig:
    return _config(
        RestorationTrainConfig,
        out,
        **{"restoration.vae_checkpoint": str(vae_run), "restoration.ae_checkpoint": str(ae_run), **overrides},
    )


def _falls(history: list[dict], term: str, factor: float) -> None:
    first, last = history[0][term], history[-1][term]
    print(f"{term}: {first:.4f} -> {last:.4f}")
    assert last < factor * first, f"{term} did not fall: {first:.4f} -> {last:.4f}"


# --------------------------------------------------------------------------- overfitting


def test_vae_overfits(tmp_path, fixed_draws):
    config = _config(VaeTrainConfig, tmp_path, **{"run.steps": 12, "optim.lr": 2e-3})
    result = train_vae(config, dataset=GeneratedPairs(2), progress=False)
    _falls(result.history, "l1", 0.7)
    state = json.loads((result.checkpoint / "state.json").read_text())
    assert state["extra"]["latent_scaling"] > 0


def test_ae_reconstruction_overfits(tmp_path, fixed_draws, vgg_file):
    config = _config(
        AeTrainConfig,
        tmp_path,
        **{
            "run.steps": 12,
            "optim.lr": 2e-3,
            "ae.perceptual_weight": 0.5,
            "perceptual.vgg19": str(vgg_file),
            "perceptual.layers": ["relu1_2"],
        },
    )
    result = train_ae(config, dataset=GeneratedPairs(2), progress=False)
    assert {"l1", "perceptual", "adversarial", "adversarial_scale", "disc"} <= set(result.history[0])
    _falls(result.history, "l1", 0.8)
    _falls(result.history, "perceptual", 0.8)


def test_ae_association_overfits(tmp_path, fixed_draws, ae_run):
    config = _config(
        AeTrainConfig,
        tmp_path,
        **{
            "run.steps": 12,
            "optim.lr": 2e-3,
            "ae.stage": "association",
            "ae.init": str(ae_run),
            "ae.adversarial_weight": 0.0,
        },
    )
    result = train_ae(config, dataset=GeneratedPairs(2), progress=False)
    _falls(result.history, "association", 0.7)
    _falls(result.history, "loss", 0.8)


def test_restoration_overfits(tmp_path, fixed_draws, vae_run, ae_run, vgg_file):
    config = _restoration(
        tmp_path,
        vae_run,
        ae_run,
        **{
            "run.steps": 12,
            "optim.lr": 1e-2,
            "restoration.perceptual_weight": 0.01,
            "perceptual.vgg19": str(vgg_file),
            "perceptual.layers": ["relu1_2"],
        },
    )
    result = train_diffusion(config, dataset=GeneratedPairs(2), progress=False)
    assert set(result.history[0]) == {"loss", "ldm", "ldm_input", "ldm_condition", "mse", "perceptual"}
    _falls(result.history, "loss", 0.85)
    _falls(result.history, "ldm", 0.85)


def test_degradation_overfits(tmp_path, fixed_draws, vae_run):
    config = _config(
        DegradationTrainConfig,
        tmp_path,
        **{"run.steps": 12, "optim.lr": 1e-2, "degradation.vae_checkpoint": str(vae_run)},
    )
    result = train_diffusion(config, dataset=GeneratedPairs(2), progress=False)
    assert set(result.history[0]) == {"loss", "ldm", "ldm_input", "ldm_condition"}  # L_ldm only
    _falls(result.history, "ldm", 0.85)


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("kind", ["restoration", "ae", "vae"])
def test_resume_is_bitwise_exact(tmp_path, kind, request):
    whole = request.getfixturevalue(
        {"restoration": "restoration_result", "ae": "ae_rec_result", "vae": "vae_result"}[kind]
    )
    assert len(whole.history) == 3
    copy = tmp_path / "run"
    shutil.copytree(whole.output_dir, copy)
    overrides = {}
    if kind == "restoration":
        overrides = {
            "restoration.vae_checkpoint": str(request.getfixturevalue("vae_run")),
            "restoration.ae_checkpoint": str(request.getfixturevalue("ae_run")),
        }
    torch.manual_seed(12345)  # the resumed run must not depend on the state it finds
    np.random.seed(12345)
    resumed = _three_steps(kind, copy, **overrides)(resume=copy / "checkpoints/step_00000002")
    assert len(resumed.history) == 1
    expected, got = whole.history[2], resumed.history[0]
    assert set(expected) == set(got)
    for term in expected:  # bitwise: the same float32 value, not merely close
        assert torch.equal(torch.tensor(got[term]), torch.tensor(expected[term])), (term, got[term], expected[term])
    rows = (copy / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]  # the interrupted run's row 3 replaced


def test_checkpoints_hold_no_pickle(restoration_result):
    checkpoint = restoration_result.checkpoint
    files = sorted(p for p in checkpoint.iterdir())
    assert {p.suffix for p in files} == {".safetensors", ".json"}
    for path in files:
        assert path.read_bytes()[:1] != b"\x80", f"{path.name} looks like a pickle"
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            with safe_open(str(path), framework="pt") as f:
                assert list(f.keys())
    names = {p.name for p in files}
    assert {
        "model.safetensors",
        "model.optimizer.safetensors",
        "rng_0.safetensors",
        "rng_0.json",
        "state.json",
    } <= names
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["position"] == {"samples": 6, "epoch": 1, "index": 1}
    assert state["parts"]["model"]["scheduler"]["last_epoch"] == 3


def test_new_run_refuses_a_used_output_dir(ae_rec_result):
    with pytest.raises(ValueError, match="--resume auto"):
        _three_steps("ae", ae_rec_result.output_dir)()


# --------------------------------------------------------------------------- what trains


def test_restoration_trains_lora_boosthub_and_adapter_only(tmp_path, vae_run, ae_run):
    config = _restoration(tmp_path, vae_run, ae_run)
    accelerator = make_accelerator(config)
    stage = DiffusionStage(config, accelerator, None)
    named = dict(stage.model.named_parameters())
    trainable = [n for n, p in named.items() if p.requires_grad]
    kinds = {
        "lora": [n for n in trainable if ".lora_" in n],
        "boosthub": [n for n in trainable if ".processor." in n],
        "adapter": [n for n in trainable if n.startswith("face.adapter.")],
    }
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    assert sorted(sum(kinds.values(), [])) == sorted(trainable)
    hubs = stage.model.unet.boosthubs
    assert sum(len(list(h.parameters())) for h in hubs) == len(kinds["boosthub"])
    assert not any(named[n].requires_grad for n in named if n.startswith(("vae.", "face.encoder.")))

    stage.bind(accelerator, {"model": stage.loss})
    data = GeneratedPairs(2)
    hq = torch.stack([torch.tensor(it["hq"]) for it in data.items])
    lq = torch.stack([torch.tensor(it["lq"]) for it in data.items])
    to = lambda x: x.permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    batch = Batch(to(hq), to(lq), torch.tensor([True, True]), ["", ""])
    stage.micro_step(batch, torch.Generator().manual_seed(0), 0)
    for hub in hubs:  # W_O starts at zero; its gradient is what lets BoostHub learn
        assert hub.out.weight.grad is not None and hub.out.weight.grad.abs().sum() > 0
    assert named["face.adapter.net.0.weight"].grad.abs().sum() > 0
    assert all(named[n].grad is None for n in named if not named[n].requires_grad)


def test_t_cond_max_bounds_the_condition_timesteps_only(tmp_path, vae_run, ae_run):
    """``restoration.t_cond_max``: t_y < t_cond_max, t_x still over the whole schedule."""
    config = _restoration(tmp_path, vae_run, ae_run, **{"restoration.t_cond_max": 5, "run.batch_size": 64})
    accelerator = make_accelerator(config)
    stage = DiffusionStage(config, accelerator, None)
    seen: list[torch.Tensor] = []

    def spy(hq, lq, text, keep, noise, t):
        seen.append(t)
        return {"loss": torch.zeros((), requires_grad=True)}

    stage.bind(accelerator, {"model": spy})
    images = torch.zeros(64, 3, R, R)  # the spy never looks at them
    stage.micro_step(
        Batch(images, images, torch.ones(64, dtype=torch.bool), [""] * 64), torch.Generator().manual_seed(0), 0
    )
    t_x, t_y = seen[0].chunk(2)
    assert t_y.max() < 5 and len(set(t_y.tolist())) > 1
    assert t_x.max() >= 5, "t_x must keep the whole schedule"
    too_far = _restoration(tmp_path / "far", vae_run, ae_run, **{"restoration.t_cond_max": 1001})
    with pytest.raises(ValueError, match="t_cond_max: 1001 exceeds the schedule's 1000"):
        DiffusionStage(too_far, make_accelerator(too_far), None)


# --------------------------------------------------------------------------- merge


def test_merge_output_loads_and_restores(tmp_path, restoration_result):
    from flipnet_rt.cli.main import main as rt_main
    from flipnet_rt.models import load_model_dir, lora_layers
    from flipnet_rt.train.checkpoint import load_trainable, read_state, read_weights
    from flipnet_rt.train.config import from_dict

    checkpoint = restoration_result.checkpoint
    config = from_dict(RestorationTrainConfig, read_state(checkpoint)["config"])
    # the trained (LoRA) network, rebuilt from the checkpoint: the reference for the merged one
    stage = DiffusionStage(config, make_accelerator(config), checkpoint)
    load_trainable(stage.model, read_weights(checkpoint, "model"), "model")
    assert lora_layers(stage.model.unet.unet)

    out = tmp_path / "model"
    assert train_main(["-q", "merge", "--checkpoint", str(restoration_result.output_dir), "-o", str(out)]) == 0
    merged = load_model_dir(out)
    assert not lora_layers(merged.unet.unet)
    assert merged.config.latent_scaling == stage.model.config.latent_scaling != 0.18215
    g = torch.Generator().manual_seed(0)
    sample, context = (
        torch.randn(2, 4, 8, 8, generator=g),
        torch.randn(2, merged.config.context_tokens, 64, generator=g),
    )
    t = torch.tensor([500, 0])
    with torch.no_grad():
        want = stage.model.unet.eval()(sample, t, context)
        got = merged.unet(sample, t, context)
    rel = ((got - want).norm() / want.norm()).item()
    print(f"merged vs LoRA UNet: relative L2 {rel:.2e}")
    assert rel < 1e-5

    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(face_like(R, seed=7)).save(inputs / "face.png")
    code = rt_main(
        ["restore", str(inputs), "-o", str(tmp_path / "out"), "--model", str(out), "--steps", "2", "--aligned"]
    )
    assert code == 0 and (tmp_path / "out" / "face.png").is_file()


# --------------------------------------------------------------------------- errors


def test_missing_paths_name_the_option(tmp_path, capsys, vae_run, ae_run):
    def error(*argv: str) -> str:
        assert train_main(["-q", *argv, "--output-dir", str(tmp_path / "o"), "--num-workers", "0"]) == 2
        return capsys.readouterr().err

    tiny = ["--config", "tiny", "--lora-rank", "4", "--perceptual-weight", "0"]
    assert "--ae-checkpoint" in error("restoration", *tiny, "--vae-checkpoint", str(vae_run))
    assert "--vae-checkpoint" in error("restoration", *tiny, "--ae-checkpoint", str(ae_run))
    assert "--vae-checkpoint" in error("degradation", "--lora-rank", "4", "--vae-checkpoint", str(tmp_path / "none"))
    assert "--sd-dir" in error("restoration", *tiny, "--sd-dir", str(tmp_path / "sd"), "--ae-checkpoint", str(ae_run))
    assert "--vgg19" in error(
        "restoration",
        "--lora-rank",
        "4",
        "--vae-checkpoint",
        str(vae_run),
        "--ae-checkpoint",
        str(ae_run),
        "--perceptual-weight",
        "0.01",
    )
    assert "--vgg19" in error("ae", "--hq-dir", str(tmp_path))
    assert "--hq-dir" in error("ae", "--perceptual-weight", "0", "--hq-dir", str(tmp_path / "faces"))
    assert "--init" in error("ae", "--perceptual-weight", "0", "--stage", "association")
    assert "--checkpoint" in error_merge(tmp_path, capsys)


def error_merge(tmp_path: Path, capsys) -> str:
    assert train_main(["merge", "--checkpoint", str(tmp_path / "nothing"), "-o", str(tmp_path / "m")]) == 2
    return capsys.readouterr().err


# --------------------------------------------------------------------------- --sd-dir


def _tiny_sd_folder(root: Path) -> Path:
    """A diffusers SD folder with tiny random weights: unet/, vae/, and a real CLIP tokenizer and
    text encoder (tests/helpers.py)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from flipnet_rt.config.presets import TINY_UNET, TINY_VAE

    tiny_clip_folder(root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        UNet2DConditionModel(**TINY_UNET).save_pretrained(root / "unet", safe_serialization=True)
        AutoencoderKL(**TINY_VAE).save_pretrained(root / "vae", safe_serialization=True)
    return root


def test_sd_dir_run_embeds_captions_and_keeps_the_sd_vae(tmp_path, ae_run):
    from safetensors.torch import load_file

    sd = _tiny_sd_folder(tmp_path / "sd")
    config = _config(
        RestorationTrainConfig,
        tmp_path / "run",
        **{"model.sd_dir": str(sd), "restoration.ae_checkpoint": str(ae_run), "run.steps": 2},
    )
    data = GeneratedPairs(2, caption="a smiling face")
    accelerator = make_accelerator(config)
    result = train_diffusion(config, dataset=data, accelerator=accelerator, progress=False)
    assert len(result.history) == 2 and all(np.isfinite(h["loss"]) for h in result.history)

    base = result.output_dir / "base_model"
    sd_vae = load_file(str(sd / "vae" / "diffusion_pytorch_model.safetensors"))
    base_vae = load_file(str(base / "vae.safetensors"))
    assert all(torch.equal(base_vae[k], v) for k, v in sd_vae.items())  # the SD folder's VAE, untouched
    trained = load_file(str(result.checkpoint / "model.safetensors"))
    assert not any(k.startswith(("vae.", "face.encoder.")) for k in trained)

    stage = DiffusionStage(config, accelerator, result.checkpoint)
    stage.bind(accelerator, {})
    text = stage.prompts(["a smiling face", ""], torch.tensor([False, False]))
    dropped = stage.prompts(["a smiling face"], torch.tensor([True]))
    assert torch.equal(text[1], stage.model.prompt("restore"))  # no caption: the inference prompt
    assert torch.equal(dropped[0], stage.encoder([""])[0])  # dropped: CLIP("")
    assert not torch.equal(text[0], text[1]) and not torch.equal(text[0], dropped[0])


# --------------------------------------------------------------------------- command line


def test_cli_trains_from_an_image_folder_and_resumes(tmp_path):
    """The whole data path: an HQ folder (flipnet_rt.train.data.HQFaceFolder) with on-the-fly LQ (Eq. 9)."""
    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(3):
        Image.fromarray(face_like(80, seed=i)).save(hq / f"{i}.png")  # resized to 64 by the dataset
    out = tmp_path / "run"
    argv = [
        "-q",
        "ae",
        "--hq-dir",
        str(hq),
        "--output-dir",
        str(out),
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--perceptual-weight",
        "0",
        "--set",
        "ae.disc_channels=8",
        "--set",
        "ae.disc_layers=2",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1",
    ]
    assert train_main([*argv, "--steps", "2"]) == 0
    assert train_main([*argv, "--steps", "3", "--resume", "auto"]) == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,samples,lr,seconds,loss,l1,adversarial,adversarial_scale,disc")
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    state = json.loads((out / "checkpoints/step_00000003/state.json").read_text())
    assert state["position"] == {"samples": 6, "epoch": 2, "index": 0}
    assert json.loads((out / "config.json").read_text())["data"]["hq_dir"] == str(hq)


def test_gradient_checkpointing_changes_nothing_but_memory(tmp_path, vae_run, ae_run):
    runs = []
    for flag in (False, True):
        config = _restoration(
            tmp_path / str(flag), vae_run, ae_run, **{"run.steps": 2, "run.gradient_checkpointing": flag}
        )
        runs.append(train_diffusion(config, dataset=GeneratedPairs(2), progress=False).history)
    plain, checkpointed = runs
    assert plain[0] == checkpointed[0]  # the same forward
    for term in plain[1]:  # after one update: the gradients agreed (recomputation is deterministic)
        assert checkpointed[1][term] == pytest.approx(plain[1][term], rel=1e-5), term
