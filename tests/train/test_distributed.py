"""Training over several processes (issue 27): `torchrun --nproc_per_node 2 -m flipnet_rt.train ...` on CPUs
(gloo) takes the same optimizer steps as one process at the same global batch.

`run.batch_size` is the global batch (train/stream.py: ``Layout``): with 2 processes each reads
its own half of every micro-batch, the gradients are averaged by DDP, and the logged terms are
averaged over the processes (train/loop.py ``_reduce``).

The one-process reference runs the same global batch of 4 as 2 accumulation micro-steps of 2
images, so that every forward in both runs sees the same 2 images (sample order is a pure
function of the seed: train/stream.py), and nothing of the stage draws noise by rank: the face
autoencoder stage (L1 + hinge GAN, ``ae.adaptive_weight = false``, because the adaptive weight
is computed per process by design) is deterministic given its batch, and its LQ images are
pure functions of (seed, epoch, index). Why not one process at micro-batch 4: oneDNN picks its
convolution kernels by batch size, and a different kernel rounds differently; AdamW turns that
into visible weight differences where a gradient is near its eps (1e-8): measured here, micro-
batch 1 against 4 moved one weight by 3.4e-4 (0.34 lr; its gradient was 7.8e-9 in one run,
1.1e-9 in the other), while every other weight agreed within 1e-5.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import face_like
from PIL import Image
from safetensors.torch import load_file

from flipnet_rt.train.ae import AutoencoderStage
from flipnet_rt.train.checkpoint import read_state
from flipnet_rt.train.config import AeTrainConfig, from_dict
from flipnet_rt.train.logging_utils import read_metrics

ROOT = Path(__file__).resolve().parents[2]
STEPS, BATCH, LR = 3, 4, 1e-3
# Expected difference: none. Both runs add two gradients of 2 images each and halve them (the
# one process: Accelerate divides each micro-step's loss by 2; two processes: DDP divides by the
# world size, gloo sums the two), and halving is exact in binary floating point, so the weights
# agree bit for bit here (measured 0.0). The 1e-6 slack (a thousandth of one AdamW step, lr 1e-3)
# only allows for a gloo or torch that sums in another order. What the test guards against moves
# weights by about lr: AdamW's first step moves every weight by ~lr * sign(gradient), so a
# process stepping on its own half-batch gradient (no averaging), or reading the whole batch
# itself (other samples, twice the batch), flips signs of many weights' updates.
WEIGHT_TOLERANCE = 1e-6
LOSS_REL_TOLERANCE = 1e-5  # metrics.csv keeps 6 significant digits


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out: Path, hq: Path, *, processes: int, accumulation: int) -> None:
    argv = [
        "-m",
        "flipnet_rt.train",
        "-q",
        "ae",
        "--hq-dir",
        str(hq),
        "--output-dir",
        str(out),
        "--steps",
        str(STEPS),
        "--batch-size",
        str(BATCH),
        "--gradient-accumulation",
        str(accumulation),
        "--lr",
        str(LR),
        "--num-workers",
        "0",
        "--perceptual-weight",
        "0",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1000",
        "--set",
        "ae.disc_channels=8",
        "--set",
        "ae.disc_layers=2",
        "--set",
        "ae.adaptive_weight=false",
        "--set",
        "ae.adversarial_start=0",
    ]
    if processes > 1:
        argv = [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            *argv,
        ]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"{processes} process(es): exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    )


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(6):  # 3 steps of 4 over 6 images: the third step crosses into the next epoch
        Image.fromarray(face_like(64, seed=i)).save(hq / f"{i}.png")
    began = time.perf_counter()
    _train(tmp_path / "one", hq, processes=1, accumulation=2)
    _train(tmp_path / "two", hq, processes=2, accumulation=1)
    print(f"two runs: {time.perf_counter() - began:.1f} s")

    one, two = (tmp_path / name / "checkpoints" / f"step_{STEPS:08d}" for name in ("one", "two"))
    assert (two / "rng_1.json").is_file() and not (one / "rng_1.json").exists()  # a group of 2
    assert read_state(two)["position"] == read_state(one)["position"] == {"samples": 12, "epoch": 2, "index": 0}

    rows_one, rows_two = (read_metrics(tmp_path / name / "metrics.csv") for name in ("one", "two"))
    assert [r["step"] for r in rows_two] == [r["step"] for r in rows_one] == [1, 2, 3]
    assert [r["samples"] for r in rows_two] == [r["samples"] for r in rows_one]
    for a, b in zip(rows_one, rows_two):
        for term in ("loss", "l1", "adversarial", "disc"):
            assert b[term] == pytest.approx(a[term], rel=LOSS_REL_TOLERANCE), (int(a["step"]), term, a[term], b[term])

    config = from_dict(AeTrainConfig, read_state(one)["config"])
    start = AutoencoderStage(config)  # the seeded initial weights: how far the run moved them
    initial = {"model": start.autoencoder.state_dict(), "disc": start.disc.state_dict()}
    for part in ("model", "disc"):
        a, b = load_file(str(one / f"{part}.safetensors")), load_file(str(two / f"{part}.safetensors"))
        assert set(a) == set(b)
        diff = max((a[k] - b[k]).abs().max().item() for k in a)
        moved = max((a[k] - initial[part][k]).abs().max().item() for k in a)
        print(f"{part}: max |1 process - 2 processes| = {diff:.3g}; training moved weights by up to {moved:.3g}")
        assert moved > 100 * WEIGHT_TOLERANCE  # the tolerance is small against what the run did
        assert diff <= WEIGHT_TOLERANCE, f"{part}: weights differ by {diff:.3g} > {WEIGHT_TOLERANCE:g}"
