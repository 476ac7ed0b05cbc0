"""Bench output: a rich table for people, JSON and CSV for machines, a PNG plot by stage."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runner import STAGES


def table(records: Sequence[dict[str, Any]], baseline: dict[str, float] | None) -> None:
    """Print the results, one column per configuration (rich when installed, plain text otherwise)."""

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    rows: list[tuple[str, list[str]]] = [(f"{s} ms", [fmt(r["stages_ms"][s], ".2f") for r in records]) for s in STAGES]
    rows += [(f"e2e {q} ms", [fmt(r["e2e_ms"][q], ".1f") for r in records]) for q in ("p50", "p90", "p99")]
    rows += [
        ("overhead ms", [fmt(r["overhead_ms"], ".2f") for r in records]),
        ("images/s", [fmt(r["images_per_s"], ".3f") for r in records]),
        ("peak host MiB", [fmt(r["peak_host_mib"], ".0f") for r in records]),
        ("peak GPU MiB", [fmt(r["peak_gpu_mib"], ".0f") for r in records]),
        ("TFLOP/s", [fmt(r["tflops"], ".4f") for r in records]),
        (
            "of matmul peak",
            [
                fmt(None if r["peak_fraction"] is None else 100 * r["peak_fraction"], ".1f") + "%"
                if r["peak_fraction"] is not None
                else "-"
                for r in records
            ],
        ),
        ("x naive baseline", [fmt(r["speedup_vs_baseline"], ".2f") for r in records]),
    ]
    labels = [r["config"]["label"] for r in records]
    title = "flipnet-rt bench: medians; unet_step and sampler_update are per step"
    if baseline:
        title += f"; naive baseline (batch {baseline.get('batch', 1)}) p50 {baseline['p50']:.1f} ms"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(" | ".join(["", *labels]))
        for name, values in rows:
            print(" | ".join([name, *values]))
        return
    t = Table(title=title)
    t.add_column("stage / metric")
    for label in labels:
        t.add_column(label, justify="right")
    for name, values in rows:
        t.add_row(name, *values)
    Console(width=max(100, 24 + 16 * len(labels))).print(t)


def write_json(path: Path, records: Sequence[dict[str, Any]], baseline: dict[str, Any] | None) -> None:
    """The records so far, written whole and atomically (the bench rewrites it after every configuration)."""
    _atomic_write(path, json.dumps({"results": list(records), "baseline": baseline}, indent=2) + "\n")


def write_csv(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """One row per configuration, written whole and atomically, like :func:`write_json`."""
    env_keys = list(dict.fromkeys(k for r in records for k in r["environment"]))
    fields = (
        [
            "label",
            "batch",
            "cond_cache",
            "cuda_graph",
            *(f"{s}_ms" for s in STAGES),
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "images_per_s",
            "peak_host_mib",
            "peak_gpu_mib",
            "tflops",
            "speedup_vs_baseline",
            "model",
            "steps",
            *(f"env_{k}" for k in env_keys),
        ]
        if records
        else []
    )
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    for r in records:
        row = {
            "label": r["config"]["label"],
            "batch": r["config"]["batch"],
            "cond_cache": r["config"]["cond_cache"],
            "cuda_graph": r["config"]["cuda_graph"],
            "images_per_s": r["images_per_s"],
            "peak_host_mib": r["peak_host_mib"],
            "peak_gpu_mib": r["peak_gpu_mib"],
            "tflops": r["tflops"],
            "speedup_vs_baseline": r["speedup_vs_baseline"],
            "model": r["model"],
            "steps": r["steps"],
        }
        row.update({f"{s}_ms": r["stages_ms"][s] for s in STAGES})
        row.update({f"{q}_ms": r["e2e_ms"][q] for q in ("p50", "p90", "p99")})
        row.update({f"env_{k}": v for k, v in r["environment"].items()})
        writer.writerow(row)
    _atomic_write(path, text.getvalue())


def _atomic_write(path: Path, text: str) -> None:
    """Write beside ``path`` and rename over it: a reader (or a kill) never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot(path: Path, records: Sequence[dict[str, Any]], baseline: dict[str, float] | None) -> None:
    """Stacked bars: latency per stage (UNet and update times the number of steps), per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["config"]["label"] for r in records]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(records) + 2), 4.5))
    bottom = [0.0] * len(records)
    for stage in STAGES:
        values = [
            r["stages_ms"][stage] * (r["steps"] if stage in ("unet_step", "sampler_update") else 1) for r in records
        ]
        ax.bar(labels, values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values)]
    if baseline:
        ax.axhline(baseline["p50"], color="k", linestyle="--", label="naive baseline p50")
    ax.set_ylabel("latency per batch (ms)")
    ax.set_title("flipnet-rt bench: latency by stage")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
