"""``flipnet-train``: the training command line (a thin layer over flipnet_rt.train.ae/vae/restoration/merge).

    flipnet-train vae          [--train-config FILE] [options]     the model's AutoencoderKL (from scratch)
    flipnet-train ae           [--train-config FILE] --stage reconstruction|association [--init CKPT]
    flipnet-train restoration  [--train-config FILE] --ae-checkpoint CKPT [--sd-dir DIR | --vae-checkpoint CKPT]
    flipnet-train degradation  [--train-config FILE] [--sd-dir DIR | --vae-checkpoint CKPT]
    flipnet-train merge        --checkpoint CKPT -o MODEL_DIR [--fp16]
    flipnet-train fidelity     --model MODEL_DIR --hq-dir DIR [--engine ENGINE_DIR]   the fidelity estimator

Values come from the dataclass defaults (train/config.py), then the TOML file, then the flags
below, then ``--set section.key=value`` (any key). The same command runs on one CPU, one GPU or
N GPUs: ``accelerate launch -m flipnet_rt.train.cli restoration ...``.

Exit status: 0 done, 2 for a usage error (a missing path, a bad config), named on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .config import AeTrainConfig, ConfigError, VaeTrainConfig, check, load_config, parse_value

log = logging.getLogger("flipnet_rt.train.cli")

# flag dest -> dotted config key ("{stage}" is the command's own section)
_FLAGS = {
    "model_config": "model.config",
    "sd_dir": "model.sd_dir",
    "model_seed": "model.seed",
    "output_dir": "run.output_dir",
    "steps": "run.steps",
    "batch_size": "run.batch_size",
    "gradient_accumulation": "run.gradient_accumulation",
    "mixed_precision": "run.mixed_precision",
    "gradient_checkpointing": "run.gradient_checkpointing",
    "checkpoint_every": "run.checkpoint_every",
    "log_every": "run.log_every",
    "num_workers": "run.num_workers",
    "seed": "run.seed",
    "cpu": "run.cpu",
    "lr": "optim.lr",
    "hq_dir": "data.hq_dir",
    "limit": "data.limit",
    "captions": "data.captions",
    "offshelf_dir": "data.offshelf_dir",
    "vgg19": "perceptual.vgg19",
    "perceptual_weight": "{stage}.perceptual_weight",
    "stage": "ae.stage",
    "init": "{stage}.init",
    "ae_checkpoint": "restoration.ae_checkpoint",
    "vae_checkpoint": "{stage}.vae_checkpoint",
    "lora_rank": "{stage}.lora_rank",
}


def _common(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--train-config", type=Path, metavar="FILE", help="TOML training config (train/configs/)")
    p.add_argument(
        "--resume",
        metavar="auto|CKPT",
        help="continue a run: 'auto' = the latest checkpoint in --output-dir, or a checkpoint directory",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.warmup_steps=500 (value parsed as TOML)",
    )
    m = p.add_argument_group("model")
    m.add_argument("--config", dest="model_config", metavar="NAME", help="model preset: tiny or sd21-base")
    m.add_argument("--seed-model", dest="model_seed", type=int, metavar="S", help="seed of the random initialisation")
    if command != "ae":
        m.add_argument(
            "--sd-dir", metavar="DIR", help="local diffusers Stable Diffusion 2.1-base folder (nothing is downloaded)"
        )
    r = p.add_argument_group("run")
    r.add_argument("--output-dir", metavar="DIR", help="checkpoints, metrics.csv, tensorboard/")
    r.add_argument("--steps", type=int, help="optimizer steps in all")
    r.add_argument("--batch-size", type=int, help="global batch per optimizer step (all GPUs, all accumulation)")
    r.add_argument("--gradient-accumulation", type=int, metavar="K")
    r.add_argument(
        "--mixed-precision",
        choices=("no", "fp16", "bf16"),
        help="autocast on GPUs: bf16 on Ampere or newer, fp16 with loss scaling elsewhere",
    )
    r.add_argument(
        "--gradient-checkpointing",
        action="store_const",
        const=True,
        help="recompute activations in backward: about 30%% slower, much less memory",
    )
    r.add_argument("--checkpoint-every", type=int, metavar="K")
    r.add_argument("--log-every", type=int, metavar="K")
    r.add_argument("--num-workers", type=int, help="data-loading processes per training process")
    r.add_argument("--seed", type=int, help="seed of the data order and every per-step draw")
    r.add_argument("--cpu", action="store_const", const=True, help="train on the CPU even where a GPU is visible")
    r.add_argument("--lr", type=float, help="AdamW learning rate")
    d = p.add_argument_group("data")
    d.add_argument("--hq-dir", metavar="DIR", help="HQ face folder (LQ made on the fly, Eq. 9)")
    d.add_argument("--limit", type=int, help="use this many images (a seeded random subset)")
    d.add_argument("--captions", metavar="FILE", help="captions, JSON or CSV")
    d.add_argument("--offshelf-dir", metavar="DIR", help="off-shelf LQ pool from `flipnet-rt degrade`")
    if command != "degradation":
        d.add_argument("--vgg19", metavar="FILE", help="VGG19 weights (safetensors) for the perceptual loss")
        d.add_argument("--perceptual-weight", type=float, help="0 trains without the perceptual loss (no VGG19 needed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flipnet-train", description="FLIPNET training (paper Sec. 4, 5.1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)

    vae = sub.add_parser("vae", help="train the model's VAE (models without a pretrained SD VAE)")
    _common(vae, "vae")

    ae = sub.add_parser("ae", help="train the face autoencoder (reconstruction, then association)")
    _common(ae, "ae")
    ae.add_argument("--stage", choices=("reconstruction", "association"))
    ae.add_argument("--init", metavar="CKPT", help="checkpoint of the previous stage (required by association)")

    for name, text in (("restoration", "restoration mode (Sec. 4.1)"), ("degradation", "degradation mode (Sec. 4.2)")):
        p = sub.add_parser(name, help=f"train FLIPNET in {text}")
        _common(p, name)
        if name == "restoration":
            p.add_argument("--ae-checkpoint", metavar="CKPT", help="`flipnet-train ae` checkpoint (its LQ encoder)")
        p.add_argument(
            "--vae-checkpoint", metavar="CKPT", help="`flipnet-train vae` checkpoint (needed without --sd-dir)"
        )
        p.add_argument("--lora-rank", type=int, help="LoRA rank (the paper: 64)")
        p.add_argument("--init", metavar="CKPT", help="start from another diffusion checkpoint's trainable weights")

    merge = sub.add_parser("merge", help="fold LoRA and write a model directory for `flipnet-rt --model`")
    merge.add_argument(
        "--checkpoint", type=Path, required=True, metavar="CKPT", help="restoration/degradation checkpoint"
    )
    merge.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL_DIR")
    merge.add_argument("--fp16", action="store_true", help="write float16 weights (half the size)")
    from .fidelity import add_parser as add_fidelity

    add_fidelity(sub)
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line as dotted config keys (``--set`` last)."""
    out: dict[str, Any] = {}
    for dest, key in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            out[key.format(stage=args.command)] = value
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set run.steps=100")
        out[key.strip()] = parse_value(text.strip())
    return out


def run(args: argparse.Namespace) -> int:
    if args.command == "merge":
        from .merge import merge

        path = merge(args.checkpoint, args.output, fp16=args.fp16)
        print(path)
        return 0
    if args.command == "fidelity":
        from .fidelity import main as train_fidelity

        return train_fidelity(args)
    config = check(load_config(args.command, args.train_config, overrides(args)))
    progress = not args.quiet
    if isinstance(config, AeTrainConfig):  # the command's config class (config.COMMANDS)
        from .ae import train_ae

        result = train_ae(config, resume=args.resume, progress=progress)
    elif isinstance(config, VaeTrainConfig):
        from .vae import train_vae

        result = train_vae(config, resume=args.resume, progress=progress)
    else:
        from .restoration import train_diffusion

        result = train_diffusion(config, resume=args.resume, progress=progress)
    log.info("%s: step %d, checkpoint %s", args.command, result.step, result.checkpoint)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ConfigError, CheckpointError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
