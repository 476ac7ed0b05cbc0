"""Training checkpoints in safetensors + JSON, for exact resume. No pickle, no ``torch.load``.

A checkpoint is a directory ``<output_dir>/checkpoints/step_<8 digits>/``:

    <part>.safetensors            trainable weights of a part (``model``, ``disc``), by parameter name
    <part>.optimizer.safetensors  the optimizer's per-parameter tensors, flattened ``state.<i>.<key>``
    rng_<rank>.safetensors        torch RNG states as uint8 tensors (CPU, every CUDA device)
    rng_<rank>.json               numpy and python RNG states of that process
    state.json                    step, data position, LR schedulers, optimizer hyper-parameters and
                                  scalar state, loss scaler, the configuration, run-specific extras

It is written into ``.step_<n>.partial`` and renamed when complete, so a directory named
``step_<n>`` is always whole; ``state.json`` is the last file written.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message names the file and the fix."""


@dataclass
class Part:
    """One trained network: its weights (``module``'s parameters that require grad), optimizer, LR schedule.

    ``module`` is the plain module (not a DDP wrapper); ``optimizer`` may be Accelerate's wrapper.
    """

    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that require grad, by name, detached (the weights a checkpoint holds)."""
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def load_trainable(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into the trainable parameters of ``module``; names and shapes must match exactly."""
    params = {name: p for name, p in module.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        example = missing[:2] if missing else unexpected[:2]
        raise CheckpointError(
            f"{source}: {len(missing)} trainable tensors missing and {len(unexpected)} unexpected "
            f"(e.g. {example}); the checkpoint comes from a different model or training setup "
            f"(model config, LoRA rank, unet_training, mode)"
        )
    with torch.no_grad():
        for name, p in params.items():
            if tensors[name].shape != p.shape:
                raise CheckpointError(
                    f"{source}: {name} has shape {tuple(tensors[name].shape)}, the model {tuple(p.shape)}"
                )
            p.copy_(tensors[name].to(p.dtype))


# --------------------------------------------------------------------------- optimizer state


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors for safetensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# --------------------------------------------------------------------------- RNG


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states: torch ones as uint8 tensors, numpy and python ones as JSON."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    state = np.random.get_state()
    assert isinstance(state, tuple), "the legacy global RandomState (MT19937) has a tuple state"
    name, keys, pos, has_gauss, cached = state
    version, py_state, gauss = random.getstate()
    return tensors, {
        "numpy": {
            "name": name,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss},
    }


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted((k for k in tensors if k.startswith("torch_cuda_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    n = meta["numpy"]
    np.random.set_state(
        (n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# --------------------------------------------------------------------------- save / load


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step_{step:08d}"


def latest_checkpoint(root: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root`` (None if there is none)."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return max(found)[1] if found else None


def save_checkpoint(
    root: Path,
    step: int,
    parts: list[Part],
    *,
    accelerator: Any,
    position: dict[str, int],
    config: dict[str, Any],
    extra: dict[str, Any],
    keep: int = 0,
) -> Path:
    """Write the checkpoint of ``step`` (every process calls this; rank 0 writes the shared files)."""
    root = Path(root)
    final, partial = step_dir(root, step), root / f".step_{step:08d}.partial"
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rank = accelerator.process_index
    tensors, meta = rng_state()
    save_file(tensors, str(partial / f"rng_{rank}.safetensors"))
    (partial / f"rng_{rank}.json").write_text(json.dumps(meta))
    if main:
        parts_meta = {}
        for part in parts:
            save_file(_contiguous(trainable_state(part.module)), str(partial / f"{part.name}.safetensors"))
            entry: dict[str, Any] = {"params": list(trainable_state(part.module))}
            if part.optimizer is not None:
                opt_tensors, opt_meta = flatten_optimizer(part.optimizer.state_dict())
                save_file(opt_tensors, str(partial / f"{part.name}.optimizer.safetensors"))
                entry["optimizer"] = opt_meta
            if part.scheduler is not None:
                entry["scheduler"] = _scheduler_state(part.scheduler)
            parts_meta[part.name] = entry
        scaler = getattr(accelerator, "scaler", None)
        state = {
            "format_version": FORMAT_VERSION,
            "step": step,
            "position": position,
            "num_processes": accelerator.num_processes,
            "parts": parts_meta,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "config": config,
            "extra": extra,
        }
        (partial / STATE_FILE).write_text(json.dumps(state, indent=1))
    accelerator.wait_for_everyone()
    if main:
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        if keep:
            _prune(root, keep)
    accelerator.wait_for_everyone()
    return final


def resolve_checkpoint(path: Path, option: str) -> Path:
    """A checkpoint directory, or a run's output directory (its latest checkpoint).

    ``option`` names the flag that gave the path, for the error message.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    latest = latest_checkpoint(path / "checkpoints")
    if latest is not None:
        return latest
    if not path.exists():
        raise FileNotFoundError(f"{option} {path}: no such checkpoint or run directory")
    raise CheckpointError(
        f"{option} {path}: neither a checkpoint (no {STATE_FILE}) nor a run directory with checkpoints/; "
        f"pass <output_dir> or <output_dir>/checkpoints/step_<n>"
    )


def read_state(directory: Path) -> dict[str, Any]:
    """``state.json`` of a checkpoint directory; the error says what to pass instead."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{directory}: not a checkpoint (no {STATE_FILE}); pass a directory like "
            f"<output_dir>/checkpoints/step_00001000"
        )
    state = json.loads(path.read_text())
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {state.get('format_version')} is not {FORMAT_VERSION}")
    return state


def read_weights(directory: Path, part: str) -> dict[str, torch.Tensor]:
    path = Path(directory) / f"{part}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint has no '{part}' weights")
    return load_file(str(path))


def load_checkpoint(directory: Path, parts: list[Part], *, accelerator: Any) -> dict[str, Any]:
    """Restore weights, optimizers, LR schedulers, loss scaler and this process's RNG; returns state.json."""
    directory = Path(directory)
    state = read_state(directory)
    for part in parts:
        entry = state["parts"].get(part.name)
        if entry is None:
            raise CheckpointError(f"{directory}: has no part '{part.name}'")
        load_trainable(part.module, read_weights(directory, part.name), f"{directory}/{part.name}.safetensors")
        if part.optimizer is not None:
            tensors = load_file(str(directory / f"{part.name}.optimizer.safetensors"))
            part.optimizer.load_state_dict(unflatten_optimizer(tensors, entry["optimizer"]))
        if part.scheduler is not None:
            part.scheduler.load_state_dict(entry["scheduler"])
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rank = accelerator.process_index
    rng_file = directory / f"rng_{rank}.safetensors"
    if rng_file.is_file():
        set_rng_state(load_file(str(rng_file)), json.loads((directory / f"rng_{rank}.json").read_text()))
    else:
        log.warning(
            "%s: no RNG state for process %d (saved with %d processes); RNG not restored",
            directory,
            rank,
            state["num_processes"],
        )
    return state


def _scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    state = scheduler.state_dict()
    json.dumps(state)  # fail here, not half-way through a write, if a schedule holds non-JSON state
    return state


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.contiguous().cpu() for k, v in tensors.items()}


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
