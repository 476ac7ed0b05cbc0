"""The serving contract: input and output tensors, request parsing and batching into Restorer calls.

One definition shared by ``flipnet-rt serve`` (PyTriton) and the generated production
repository's Python model (``flipnet-rt export-triton``), so both answer the same requests with
the same bytes. Numpy only: no PyTriton, no Triton here.

A request holds ``image`` ``uint8 [b, H, W, 3]`` (``b`` rows: Triton's batch dimension) and any
of the optional per-row inputs below, each ``[b, 1]``. Row ``i`` is answered with exactly
``Restorer.restore([image[i]], options_i, seeds=[seed_i])[0]`` (``degrade`` likewise): a row's
result depends on its image, options and seed only, never on the requests it was batched with,
because the Restorer draws each image's noise from its own seed and rows with different options
are never sampled together (:func:`group_rows`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..options import Mode, SamplingOptions

log = logging.getLogger(__name__)

#: Largest image a request may carry by default: 16.8 megapixels (4096 x 4096, 48 MiB as uint8).
DEFAULT_MAX_PIXELS = 4096 * 4096

IMAGE_INPUT = "image"
#: The output tensor of each model: same shape and dtype as ``image``.
OUTPUT_NAMES = {Mode.RESTORE: "restored", Mode.DEGRADE: "degraded"}


@dataclass(frozen=True)
class OptionInput:
    """An optional per-row input ``[b, 1]``: one sampling option (or the seed)."""

    name: str
    dtype: type  # numpy scalar type; np.bytes_ for strings (Triton BYTES)
    help: str


#: Optional inputs, each ``[b, 1]``; absent means the model's default (seed: 0).
OPTION_INPUTS: tuple[OptionInput, ...] = (
    OptionInput("seed", np.int64, "the image's noise seed (Restorer.restore(..., seeds=[seed])); default 0"),
    OptionInput("steps", np.int32, "denoising steps"),
    OptionInput("sampler", np.bytes_, "ddim, dpmpp-2m or euler"),
    OptionInput("spacing", np.bytes_, "leading, trailing or linspace"),
    OptionInput("guidance", np.float32, "classifier-free guidance scale (restore; 1 disables it)"),
    OptionInput("phi", np.float32, "BoostHub enhance weight"),
    OptionInput("t_cond", np.int32, "timestep of the condition stream"),
    OptionInput("strength", np.float32, "start from the noised input at this fraction of the schedule"),
    OptionInput("eta", np.float32, "DDIM stochasticity"),
    OptionInput("color_fix", np.int32, "restore: wavelet colour fix levels (0 off)"),
)
_OPTION_FIELDS = {f.name for f in dataclasses.fields(SamplingOptions)}


class RequestError(ValueError):
    """A request the server refuses; the message names the input and the fix."""


@dataclass(frozen=True)
class Row:
    """One image of a request with its resolved options and seed."""

    request: int
    index: int
    image: np.ndarray  # uint8 [H, W, 3]
    options: SamplingOptions  # seed field 0: rows group by everything but the seed
    seed: int


def parse_request(inputs: Mapping[str, np.ndarray], defaults: Callable[..., SamplingOptions], *,
                  max_pixels: int = DEFAULT_MAX_PIXELS, request: int = 0) -> list[Row]:
    """A request's tensors -> its rows.

    Args:
        inputs: ``image`` ``uint8 [b, H, W, 3]`` and optional ``[b, 1]`` option inputs.
        defaults: ``Restorer.options``: keyword overrides -> validated :class:`SamplingOptions`.
        max_pixels: largest ``H * W`` accepted.
        request: the request's position in its batch (kept on each row).

    Raises:
        RequestError: a missing, mistyped or misshapen input, an image over ``max_pixels``, an
            option value the model refuses. The message names the input and the fix.
    """
    image = inputs.get(IMAGE_INPUT)
    if image is None:
        raise RequestError(f"missing input {IMAGE_INPUT!r}: send uint8 [b, H, W, 3] RGB")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
        raise RequestError(f"input {IMAGE_INPUT!r}: {image.dtype} {list(image.shape)}; send uint8 [b, H, W, 3] RGB")
    rows, height, width = image.shape[:3]
    if height < 1 or width < 1:
        raise RequestError(f"input {IMAGE_INPUT!r}: empty image ({width}x{height})")
    if height * width > max_pixels:
        raise RequestError(
            f"input {IMAGE_INPUT!r}: {width}x{height} is {height * width / 1e6:.1f} megapixels, over this "
            f"server's limit of {max_pixels / 1e6:.1f} (--max-pixels); downscale the image or crop the face")
    unknown = sorted(set(inputs) - {IMAGE_INPUT} - {o.name for o in OPTION_INPUTS})
    if unknown:
        raise RequestError(f"unknown inputs {unknown}; known: {', '.join(o.name for o in OPTION_INPUTS)}")
    columns = {o.name: _column(inputs[o.name], o, rows) for o in OPTION_INPUTS if o.name in inputs}
    out = []
    for i in range(rows):
        given = {name: values[i] for name, values in columns.items()}
        seed = int(given.pop("seed", 0))
        try:
            options = defaults(**{k: v for k, v in given.items() if k in _OPTION_FIELDS})
        except ValueError as exc:
            raise RequestError(f"row {i}: {exc}") from None
        out.append(Row(request, i, image[i], options, seed))
    return out


def _column(values: np.ndarray, spec: OptionInput, rows: int) -> list[Any]:
    """``[b, 1]`` -> b Python values of the input's type."""
    values = np.asarray(values)
    if values.shape != (rows, 1):
        raise RequestError(f"input {spec.name!r}: shape {list(values.shape)}, expected [{rows}, 1] (one per image)")
    flat = values.reshape(-1)
    if spec.dtype is np.bytes_:
        if flat.dtype.kind not in "SOU":
            raise RequestError(f"input {spec.name!r}: {flat.dtype}; send BYTES (a string)")
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    kind = np.dtype(spec.dtype).kind
    if flat.dtype.kind != kind and not (kind == "f" and flat.dtype.kind in "iu"):
        raise RequestError(f"input {spec.name!r}: {flat.dtype}; send {np.dtype(spec.dtype).name}")
    return [float(v) if kind == "f" else int(v) for v in flat]


def group_rows(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows with equal options (seed aside), in first-seen order: each group is one Restorer call."""
    groups: dict[SamplingOptions, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.options, []).append(row)
    return list(groups.values())


def run_batch(requests: Sequence[Mapping[str, np.ndarray]], run: Callable[..., list[np.ndarray]],
              defaults: Callable[..., SamplingOptions], mode: Mode, *,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> list[dict[str, np.ndarray] | RequestError]:
    """Answer the requests of one dynamic batch: one ``run`` call per group of equal options.

    Args:
        requests: each a mapping of input name -> array (see :func:`parse_request`).
        run: ``Restorer.restore`` or ``Restorer.degrade``: ``(images, options, seeds)`` -> images.
        defaults: ``Restorer.options``.
        mode: which model this is (names the output).

    Returns:
        Per request, in order: ``{output: uint8 [b, H, W, 3]}``, or the :class:`RequestError`
        that refused it (the other requests are still answered).
    """
    parsed: list[list[Row] | RequestError] = []
    for r, inputs in enumerate(requests):
        try:
            parsed.append(parse_request(inputs, defaults, max_pixels=max_pixels, request=r))
        except RequestError as exc:
            parsed.append(exc)
    rows = [row for p in parsed if not isinstance(p, RequestError) for row in p]
    results: dict[tuple[int, int], np.ndarray] = {}
    for group in group_rows(rows):
        log.debug("%s: %d image(s) with %s", mode.value, len(group), group[0].options)
        outputs = run([row.image for row in group], group[0].options, [row.seed for row in group])
        results.update({(row.request, row.index): out for row, out in zip(group, outputs)})
    name = OUTPUT_NAMES[mode]
    return [p if isinstance(p, RequestError) else {name: np.stack([results[(r, i)] for i in range(len(p))])}
            for r, p in enumerate(parsed)]
