"""The training loop every command shares: Accelerate, AdamW + warm-up, accumulation, clipping,
checkpoints with exact resume, loss logging.

A stage (train/ae.py, train/vae.py, train/restoration.py) says what is trained and how one
micro-batch is scored; this loop does the rest:

    for step in range(start, steps):
        for micro in range(accumulation):
            batch = next(loader)                      # this process's slice (train/stream.py)
            generator = step_generator(seed, step, micro, rank)
            terms = stage.micro_step(batch, generator, step)     # forward + accelerator.backward
        clip, optimizer.step(), LR schedule, zero_grad   # every part (model, discriminator)
        log, checkpoint

Every random draw of a step (noise, timesteps, prompt drops, posterior samples) comes from
``generator``, a pure function of (seed, step, micro-step, rank): nothing random is carried
from one step to the next, so resuming at step k replays step k exactly. The global RNGs are
checkpointed as well, for code outside the stage.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from .checkpoint import Part, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, to_dict
from .data.seeding import EpochDataset
from .logging_utils import MetricsLogger
from .stream import Layout, make_loader, position, to_images

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption without breaking exactness.
_RESUMABLE_CHANGES = {
    "run.steps",
    "run.checkpoint_every",
    "run.log_every",
    "run.num_workers",
    "run.keep_checkpoints",
    "run.output_dir",
}


@dataclass
class Batch:
    """One micro-batch on the device: images ``[B, 3, R, R]`` float32 in [-1, 1]."""

    hq: torch.Tensor
    lq: torch.Tensor
    face: torch.Tensor  # bool [B]: id embeddings apply (face data)
    caption: list[str]


@dataclass
class TrainedPart:
    """A network a stage trains with its own AdamW.

    ``state`` holds the weights (its parameters that require grad are checkpointed);
    ``forward`` is what runs forward (``state`` itself, or a loss module around it) and is
    handed to ``accelerator.prepare`` (DDP-wrapped on several GPUs).
    """

    name: str
    state: nn.Module
    forward: nn.Module
    lr: float

    def params(self) -> list[nn.Parameter]:
        return [p for p in self.state.parameters() if p.requires_grad]


class Stage:
    """What a command trains. Subclasses set ``name`` and ``terms`` and implement the methods."""

    name: str = ""
    terms: tuple[str, ...] = ()  # loss terms logged, "loss" (the total) first

    def parts(self) -> list[TrainedPart]:
        raise NotImplementedError

    def bind(self, accelerator: Any, modules: dict[str, nn.Module]) -> None:
        """Receive the prepared ``forward`` modules by part name, before the first step."""
        self.accelerator = accelerator
        self.modules = modules

    def micro_step(self, batch: Batch, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        """Forward and ``accelerator.backward`` of one micro-batch; returns the detached terms."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """JSON-able values the checkpoint keeps beside the weights (e.g. the VAE's latent scaling)."""
        return {}

    def load_extra(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved (on resume)."""


S = TypeVar("S", bound=Stage)


@dataclass
class RunResult:
    step: int
    output_dir: Path
    checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)  # per step run in this call


class Warmup:
    """LR factor: linear warm-up over ``steps`` optimizer steps, then 1, or with ``total`` a cosine
    decay from 1 at the end of the warm-up to 0 at step ``total`` (JSON-able state)."""

    def __init__(self, steps: int, total: int = 0) -> None:
        self.steps, self.total = steps, total

    def __call__(self, step: int) -> float:
        if self.steps > 0 and step < self.steps:
            return (step + 1) / self.steps
        if self.total > self.steps:
            progress = min(1.0, (step - self.steps) / (self.total - self.steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The CPU generator of one micro-step: a pure function of its arguments."""
    state = np.random.SeedSequence([seed, step, micro, rank, 0x57E9]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def make_accelerator(config: TrainConfig) -> Any:
    """``Accelerator(mixed_precision, gradient_accumulation_steps)``: 1 CPU, 1 GPU, or N under ``accelerate launch``."""
    from accelerate import Accelerator

    run = config.run
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # Launched as several processes (torchrun) on a machine without CUDA: Accelerate only joins
    # the processes into one gloo group with cpu=True; otherwise each would train alone as rank 0.
    cpu = run.cpu or (world > 1 and not torch.cuda.is_available())
    try:
        accelerator = Accelerator(
            mixed_precision=run.mixed_precision.value,
            gradient_accumulation_steps=run.gradient_accumulation,
            cpu=cpu,
        )
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"run.mixed_precision {run.mixed_precision.value!r}: {exc}") from None
    if accelerator.num_processes != world:
        raise ConfigError(
            f"launched as {world} processes (WORLD_SIZE) but Accelerate formed a group of "
            f"{accelerator.num_processes}; launch with `accelerate launch` or torchrun on matching devices"
        )
    return accelerator


def resolve_resume(resume: str | Path | None, output_dir: Path) -> Path | None:
    """``"auto"``: the latest checkpoint of the run in ``output_dir`` (None if none); a path: that
    checkpoint; None/"none": a new run, refused where ``output_dir`` already holds checkpoints."""
    root = Path(output_dir) / "checkpoints"
    if resume in (None, "", "none"):
        found = latest_checkpoint(root)
        if found is not None:
            raise ConfigError(
                f"{root.parent}: holds checkpoints (latest {found.name}); pass --resume auto to continue "
                f"that run, or another --output-dir to start a new one"
            )
        return None
    if resume == "auto":
        return latest_checkpoint(root)
    path = Path(resume)
    if not path.is_dir():
        raise ConfigError(f"--resume {path}: no such checkpoint directory")
    return path


def run_stage(
    config: TrainConfig,
    build: Callable[[Any, Path | None], S],
    make_dataset: Callable[[S], EpochDataset],
    *,
    dataset: EpochDataset | None = None,
    resume: str | Path | None = None,
    accelerator: Any = None,
    progress: bool = True,
) -> RunResult:
    """A ``flipnet-train`` stage from start to end: the accelerator (``accelerator``, or one from
    ``config.run``), the checkpoint to resume (:func:`resolve_resume`), the stage
    (``build(accelerator, resume_dir)``), the data (``dataset``, or ``make_dataset(stage)``), then
    :func:`fit`."""
    accelerator = accelerator if accelerator is not None else make_accelerator(config)
    resume_dir = resolve_resume(resume, Path(config.run.output_dir))
    stage = build(accelerator, resume_dir)
    if dataset is None:
        dataset = make_dataset(stage)
    return fit(stage, config, dataset, accelerator=accelerator, resume_dir=resume_dir, progress=progress)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "degradation":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_resume_config(saved: dict[str, Any], current: dict[str, Any]) -> None:
    old, new = _flat(saved), _flat(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in _RESUMABLE_CHANGES)
    if changed:
        log.warning("resuming with changed settings %s: the run is no longer an exact continuation", changed)


def fit(
    stage: Stage,
    config: TrainConfig,
    dataset: EpochDataset,
    *,
    accelerator: Any,
    resume_dir: Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``stage`` on ``dataset`` up to ``config.run.steps`` optimizer steps.

    ``resume_dir``: a checkpoint to continue from (see :func:`resolve_resume`), or None.
    """
    run, optim = config.run, config.optim
    layout = Layout(run.batch_size, run.gradient_accumulation, accelerator.num_processes).check()
    out = Path(run.output_dir)
    ckpt_root = out / "checkpoints"

    parts = stage.parts()
    beta1, beta2 = optim.betas  # two numbers (checked with the config)
    optimizers = [
        torch.optim.AdamW(p.params(), lr=p.lr, betas=(beta1, beta2), weight_decay=optim.weight_decay, eps=optim.eps)
        for p in parts
    ]
    prepared = accelerator.prepare(*[p.forward for p in parts], *optimizers)
    prepared = prepared if isinstance(prepared, tuple) else (prepared,)
    modules, optimizers = list(prepared[: len(parts)]), list(prepared[len(parts) :])
    factor = Warmup(optim.warmup_steps, run.steps if optim.decay == "cosine" else 0)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(getattr(o, "optimizer", o), factor) for o in optimizers]
    ckpt_parts = [Part(p.name, p.state, o, s) for p, o, s in zip(parts, optimizers, schedulers)]

    start = 0
    if resume_dir is not None:
        state = load_checkpoint(resume_dir, ckpt_parts, accelerator=accelerator)
        start = state["step"]
        stage.load_extra(state["extra"])
        _check_resume_config(state["config"], to_dict(config))
        log.info("resumed from %s at step %d (%s)", resume_dir, start, state["position"])
    stage.bind(accelerator, {p.name: m for p, m in zip(parts, modules)})

    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(config), indent=1) + "\n")
    metrics = MetricsLogger(out, stage.terms, enabled=main, resume_step=start)
    loader = make_loader(
        dataset,
        seed=run.seed,
        layout=layout,
        rank=accelerator.process_index,
        start_step=start,
        num_workers=run.num_workers,
    )
    device = accelerator.device
    batches = iter(loader)
    result = RunResult(step=start, output_dir=out, checkpoint=resume_dir)
    window: dict[str, list[float]] = {}  # term -> [sum, steps] since the last logged row
    began = time.perf_counter()
    bar = _progress(range(start, run.steps), enabled=progress and main, desc=f"{stage.name}")
    for step in bar:
        lr = optimizers[0].param_groups[0]["lr"]  # the rate this step uses
        sums: dict[str, float] = {}
        for micro in range(run.gradient_accumulation):
            raw = next(batches)
            batch = Batch(
                to_images(raw["hq"], device), to_images(raw["lq"], device), raw["face"].to(device), raw["caption"]
            )
            generator = step_generator(run.seed, step, micro, accelerator.process_index)
            with accelerator.accumulate(*modules):
                terms = stage.micro_step(batch, generator, step)
                if accelerator.sync_gradients:
                    _optimizer_step(accelerator, parts, optimizers, schedulers, optim.max_grad_norm)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) / run.gradient_accumulation
        result.history.append(sums)
        for k, value in sums.items():
            acc = window.setdefault(k, [0.0, 0])
            acc[0], acc[1] = acc[0] + value, acc[1] + 1
        done = step + 1
        if done == 1 or done % run.log_every == 0 or done == run.steps:
            values = _reduce(accelerator, {k: total / n for k, (total, n) in window.items()})
            metrics.log(done, done * run.batch_size, lr, time.perf_counter() - began, values)
            if main and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4g}")
            window = {}
        if done % run.checkpoint_every == 0 or done == run.steps:
            result.checkpoint = save_checkpoint(
                ckpt_root,
                done,
                ckpt_parts,
                accelerator=accelerator,
                position=position(done * run.batch_size, len(dataset)),
                config=to_dict(config),
                extra=stage.extra_state(),
                keep=run.keep_checkpoints,
            )
        result.step = done
    metrics.close()
    return result


def _optimizer_step(
    accelerator: Any, parts: list[TrainedPart], optimizers: list, schedulers: list, max_norm: float
) -> None:
    for part, optimizer, scheduler in zip(parts, optimizers, schedulers):
        if not any(p.grad is not None for p in part.params()):
            # Not trained this step (the discriminator before ae.adversarial_start): the fp16
            # scaler refuses an optimizer without gradients, and AdamW would not move anyway.
            scheduler.step()
            continue
        if max_norm > 0:
            accelerator.unscale_gradients(optimizer=optimizer)
            torch.nn.utils.clip_grad_norm_(part.params(), max_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def _reduce(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    if accelerator.num_processes == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], device=accelerator.device)
    t = accelerator.reduce(t, reduction="mean")
    return dict(zip(keys, t.tolist()))


def _progress(steps: range, *, enabled: bool, desc: str):
    if not enabled:
        return steps
    from tqdm import tqdm

    return tqdm(steps, desc=desc, initial=steps.start, total=steps.stop, dynamic_ncols=True, mininterval=2.0)
