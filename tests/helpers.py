"""Test helpers importable from every test module (tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def face_like(size: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic RGB uint8 image ``[size, size, 3]`` (an ellipse on a gradient, plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    face = ((xx - 0.5) / 0.32) ** 2 + ((yy - 0.5) / 0.42) ** 2 < 1.0
    base = np.stack([0.3 + 0.4 * xx, 0.3 + 0.3 * yy, 0.5 - 0.2 * xx], axis=-1)
    skin = np.array([0.85, 0.65, 0.55])
    img = np.where(face[..., None], skin, base) + rng.normal(0, 0.03, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def tiny_clip_folder(root: Path, seed: int = 5):
    """A real (tiny) CLIP tokenizer and text encoder saved under ``root/tokenizer`` and
    ``root/text_encoder`` as a diffusers Stable Diffusion folder holds them (byte-level vocabulary,
    no merges). Returns the text encoder. The global RNG is left untouched."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\u00a1"), ord("\u00ac") + 1),
        *range(ord("\u00ae"), ord("\u00ff") + 1),
    ]
    extra = [256 + i for i in range(256 - len(printable))]  # GPT-2's byte-to-unicode table
    chars = [chr(c) for c in printable + extra]
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    try:
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[])  # transformers >= 5
    except TypeError:  # transformers 4: file paths
        (root / "raw").mkdir(parents=True)
        (root / "raw" / "vocab.json").write_text(json.dumps(vocab))
        (root / "raw" / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(root / "raw" / "vocab.json"), str(root / "raw" / "merges.txt"))
    tokenizer.save_pretrained(root / "tokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=77,
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
            )
        )
    text.save_pretrained(root / "text_encoder", safe_serialization=True)
    return text


def require(ok: bool, what: str) -> None:
    """Skip when ``what`` is missing on a developer machine; fail under CI (the env var ``CI`` set to
    anything but ""/0/false), where everything a test needs must be present."""
    import os

    import pytest

    if ok:
        return
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
        pytest.fail(f"{what} is missing and CI is set: CI must provide it")
    pytest.skip(f"{what} is missing")


def require_data(path: Path, what: str) -> None:
    """``require`` for real data under ../shared (beside the project)."""
    require(path.exists(), f"{path}: {what} (../shared/data beside the project)")


def cupy_on_a_gpu():
    """CuPy with a visible CUDA GPU, else the test skips with the reason (GPU tests only)."""
    import pytest

    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'flipnet-rt[gpu]')")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA GPU")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        pytest.skip(f"no CUDA GPU ({exc})")
    return cupy


def native_cuda_kernels():
    """``flipnet_rt._native`` built with CUDA kernels, else the test skips with the reason."""
    import pytest

    from flipnet_rt.imaging import native

    nat = native.module()
    if nat is None or not nat.cuda:
        pytest.skip("flipnet_rt._native was built without CUDA kernels (FLIPNET_CUDA=ON pip install .)")
    return nat


def served(restorer, image, options, seed: int, fidelity="auto"):
    """What the served ``restore`` model answers for one row (``flipnet_rt/serve/protocol.py``'s
    contract): ``FaceRestorer(restorer, FaceOptions(keep_detail=False, fidelity=...))`` on the crop.
    With fidelity 0 that is ``Restorer.restore([image], options, [seed])[0]``."""
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer

    faces = FaceRestorer(restorer, options=FaceOptions(keep_detail=False, fidelity=fidelity))
    return faces.restore_crops([image], [seed], options)[0]


def restorer_latents(restorer, images, options=None, seeds=None, mode=None) -> np.ndarray:
    """The latents ``float32 [B, 4, h, w]`` that ``restorer.restore(images, options, seeds)`` (or
    ``degrade`` with ``mode``) samples before decoding: its own fit and seeds, then
    ``DiffusionCore.latents`` (for parity checks)."""
    from flipnet_rt.config.options import Mode, image_seed

    options = options or restorer.options()
    pixels, _ = restorer._fit(images)
    seeds = seeds if seeds is not None else [image_seed(options.seed, i) for i in range(len(images))]
    return restorer.core.latents(pixels, mode or Mode.RESTORE, options, seeds)
