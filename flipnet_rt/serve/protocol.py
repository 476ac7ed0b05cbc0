"""The serving contract: input and output tensors, request parsing and batching into Restorer calls.

One definition shared by ``flipnet-rt serve`` (PyTriton) and the generated production
repository's Python model (``flipnet-rt export-triton``), so both answer the same requests with
the same bytes. Numpy only: no PyTriton, no Triton here.

A request holds ``image`` ``uint8 [b, H, W, 3]`` (``b`` rows: Triton's batch dimension) and any
of the optional per-row inputs below, each ``[b, 1]``. Row ``i`` of the aligned-crop ``restore``
model is answered with exactly::

    FaceRestorer(restorer, options=FaceOptions(keep_detail=False, fidelity=f_i),
                 sampling=options_i).restore_crops([image[i]], [seed_i])[0]

where ``f_i`` is the row's ``fidelity`` input (``float32``, a weight in [0, 1]: how much of the
input face the answer keeps) or ``"auto"`` when the input is absent (the model's fidelity
estimator decides; a model without one keeps the restoration, W = 0). With W = 0 that is
``Restorer.restore([image[i]], options_i, seeds=[seed_i])[0]`` byte for byte, with W = 1 the
input ``image[i]`` byte for byte (:mod:`flipnet_rt.faces.fidelity`). ``degrade`` answers
``Restorer.degrade([image[i]], options_i, seeds=[seed_i])[0]`` and refuses a ``fidelity`` input.
A row's result depends on its image, options, fidelity and seed only, never on the requests it
was batched with: the Restorer draws each image's noise from its own seed, and rows with
different options or fidelity are never run together (:func:`group_rows`). A ``fidelity`` that
is not a number in [0, 1] (NaN, inf, < 0, > 1) refuses its request only.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.options import MAX_SEED, Mode, SamplingOptions
from ..faces.fidelity import AUTO

if TYPE_CHECKING:
    from ..runtime.restorer import Restorer

log = logging.getLogger(__name__)

#: Largest image a request may carry by default: 16.8 megapixels (4096 x 4096, 48 MiB as uint8).
DEFAULT_MAX_PIXELS = 4096 * 4096

IMAGE_INPUT = "image"
#: The optional per-row fidelity weight of ``restore`` (absent: ``auto``, the model's estimator).
FIDELITY_INPUT = "fidelity"
#: The output tensor of each model: same shape and dtype as ``image``.
OUTPUT_NAMES = {Mode.RESTORE: "restored", Mode.DEGRADE: "degraded"}


@dataclass(frozen=True)
class OptionInput:
    """An optional per-row input ``[b, 1]``: one sampling option (or the seed, or the fidelity)."""

    name: str
    dtype: type  # numpy scalar type; np.bytes_ for strings (Triton BYTES)
    help: str


#: Optional inputs, each ``[b, 1]``; absent means the model's default (seed: 0, fidelity: auto).
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
    OptionInput(
        FIDELITY_INPUT,
        np.float32,
        "restore: how much of the input face to keep, in [0, 1] (0: the "
        "restoration, 1: the input); absent: auto, the model's fidelity estimator",
    ),
)
_OPTION_FIELDS = {f.name for f in dataclasses.fields(SamplingOptions)}
#: Distinct fidelity values (or option sets) whose FaceRestorer a model instance keeps.
FACE_RESTORER_CACHE = 64

#: A row's fidelity: a weight in [0, 1] or ``"auto"``.
Fidelity = float | str
#: What answers one group of rows: ``(images, options, seeds, fidelity) -> images``, each image
#: ``uint8 [H, W, 3]`` in and out (see :func:`model_runner`).
Run = Callable[[list[np.ndarray], SamplingOptions, list[int], Fidelity], list[np.ndarray]]


class RequestError(ValueError):
    """A request the server refuses; the message names the input and the fix."""


class TooLarge(RequestError):
    """A request over this server's size limits (HTTP 413)."""


@dataclass(frozen=True)
class Row:
    """One image of a request with its resolved options and seed."""

    request: int
    index: int
    image: np.ndarray  # uint8 [H, W, 3]
    options: SamplingOptions  # seed field 0: rows group by everything but the seed
    seed: int
    fidelity: Fidelity = AUTO  # restore: a weight in [0, 1], or "auto" (the input absent)


def parse_request(
    inputs: Mapping[str, np.ndarray],
    defaults: Callable[..., SamplingOptions],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    request: int = 0,
    mode: Mode = Mode.RESTORE,
) -> list[Row]:
    """A request's tensors -> its rows.

    Args:
        inputs: ``image`` ``uint8 [b, H, W, 3]`` and optional ``[b, 1]`` option inputs.
        defaults: ``Restorer.options``: keyword overrides -> validated :class:`SamplingOptions`.
        max_pixels: largest ``H * W`` accepted.
        request: the request's position in its batch (kept on each row).
        mode: the model the request is for (``fidelity`` is a restore input only).

    Raises:
        RequestError: a missing, mistyped or misshapen input, an image over ``max_pixels``, an
            option value the model refuses, a ``fidelity`` outside [0, 1] or sent to ``degrade``.
            The message names the input and the fix.
    """
    image = inputs.get(IMAGE_INPUT)
    if image is None:
        raise RequestError(f"missing input {IMAGE_INPUT!r}: send uint8 [b, H, W, 3] RGB")
    image = np.asarray(image)
    check_image(image.shape, max_pixels, f"{image.dtype} {list(image.shape)}", uint8=image.dtype == np.uint8)
    rows = image.shape[0]
    unknown = sorted(set(inputs) - {IMAGE_INPUT} - {o.name for o in OPTION_INPUTS})
    if unknown:
        raise RequestError(f"unknown inputs {unknown}; known: {', '.join(o.name for o in OPTION_INPUTS)}")
    if FIDELITY_INPUT in inputs and mode is not Mode.RESTORE:
        raise RequestError(
            f"input {FIDELITY_INPUT!r}: applies to restore only (how much of the input face a "
            f"restoration keeps); leave it out of {mode.value} requests"
        )
    columns = {o.name: _column(inputs[o.name], o, rows) for o in OPTION_INPUTS if o.name in inputs}
    out = []
    for i in range(rows):
        given = {name: values[i] for name, values in columns.items()}
        seed = int(given.pop("seed", 0))
        if not 0 <= seed <= MAX_SEED:
            raise RequestError(f"row {i}: seed: {seed} is outside [0, {MAX_SEED}]")
        fidelity = _fidelity(given.pop(FIDELITY_INPUT), i) if FIDELITY_INPUT in given else AUTO
        try:
            options = defaults(**{k: v for k, v in given.items() if k in _OPTION_FIELDS})
        except ValueError as exc:
            raise RequestError(f"row {i}: {exc}") from None
        out.append(Row(request, i, image[i], options, seed, fidelity))
    return out


def check_image(shape: Sequence[int], max_pixels: int, described: str, *, uint8: bool = True) -> None:
    """The ``image`` input's shape (and dtype, ``uint8``) against ``[b, H, W, 3]`` and ``max_pixels``.

    Raises:
        RequestError: a wrong dtype or shape, an empty image; :class:`TooLarge` over ``max_pixels``.
            ``described`` (e.g. ``"float32 [8, 8, 3]"``) names what was sent.
    """
    if not uint8 or len(shape) != 4 or shape[-1] != 3:
        raise RequestError(
            f"input {IMAGE_INPUT!r}: {described}; send uint8 [b, H, W, 3] RGB (b images: one image is [1, H, W, 3])"
        )
    height, width = shape[1], shape[2]
    if height < 1 or width < 1:
        raise RequestError(f"input {IMAGE_INPUT!r}: empty image ({width}x{height})")
    if height * width > max_pixels:
        raise TooLarge(
            f"input {IMAGE_INPUT!r}: {width}x{height} is {height * width / 1e6:.1f} megapixels, over this "
            f"server's limit of {max_pixels / 1e6:.1f} (--max-pixels); downscale the image or crop the face"
        )


def _fidelity(value: float, row: int) -> float:
    """One row's ``fidelity`` input -> the weight, or a :class:`RequestError` naming the fix."""
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise RequestError(
            f"row {row}: {FIDELITY_INPUT}: {np.float32(value)} is outside [0, 1]; send a weight in [0, 1] "
            f"(0: the restoration, 1: the input face) or leave the input out for auto (the model's estimator)"
        )
    return float(value)


def _column(values: np.ndarray, spec: OptionInput, rows: int) -> list[Any]:
    """``[b, 1]`` -> b Python values of the input's type."""
    values = np.asarray(values)
    if values.shape != (rows, 1):
        raise RequestError(f"input {spec.name!r}: shape {list(values.shape)}, expected [{rows}, 1] (one per image)")
    flat = values.reshape(-1)
    if spec.dtype is np.bytes_:
        if flat.dtype.kind not in "SOU":
            raise RequestError(f"input {spec.name!r}: {flat.dtype}; send BYTES (a string)")
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
        except UnicodeDecodeError:
            raise RequestError(f"input {spec.name!r}: not UTF-8 text; send {spec.help}") from None
    kind = np.dtype(spec.dtype).kind
    if flat.dtype.kind != kind and not (kind == "f" and flat.dtype.kind in "iu"):
        raise RequestError(f"input {spec.name!r}: {flat.dtype}; send {np.dtype(spec.dtype).name}")
    return [float(v) if kind == "f" else int(v) for v in flat]


def group_rows(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows with equal options (seed aside) and equal fidelity, in first-seen order: each group is
    one ``run`` call (one Restorer call)."""
    groups: dict[tuple[SamplingOptions, Fidelity], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.options, row.fidelity), []).append(row)
    return list(groups.values())


def model_runner(restorer: Restorer, mode: Mode) -> Run:
    """What answers a group of rows of the ``restore`` (aligned crops) or ``degrade`` model.

    ``restore``: ``FaceRestorer(restorer, options=FaceOptions(keep_detail=False, fidelity=f),
    sampling=options).restore_crops(images, seeds)``, one FaceRestorer per distinct ``f`` (the
    last :data:`FACE_RESTORER_CACHE` kept); ``degrade``: ``restorer.degrade(images, options, seeds)``.

    Args:
        restorer: a :class:`flipnet_rt.runtime.restorer.Restorer` (``restore``, ``degrade``, ``options``,
            ``config.resolution``, ``has_fidelity``).
        mode: which model.

    Returns:
        ``(images, options, seeds, fidelity) -> images``: ``uint8 [H, W, 3]`` each, in and out.
    """
    if mode is Mode.DEGRADE:

        def degrade(
            images: list[np.ndarray], options: SamplingOptions, seeds: list[int], fidelity: Fidelity = AUTO
        ) -> list[np.ndarray]:
            if fidelity != AUTO:
                raise ValueError(f"degrade: fidelity {fidelity!r} applies to restore only; leave it out for degrade")
            return restorer.degrade(images, options, seeds)

        return degrade

    from ..faces.pipeline import FaceOptions, FaceRestorer

    @functools.lru_cache(maxsize=FACE_RESTORER_CACHE)
    def faces(fidelity: Fidelity) -> FaceRestorer:
        log.debug("restore: a FaceRestorer for fidelity %s", fidelity)
        return FaceRestorer(restorer, options=FaceOptions(keep_detail=False, fidelity=fidelity))

    def restore(
        images: list[np.ndarray], options: SamplingOptions, seeds: list[int], fidelity: Fidelity = AUTO
    ) -> list[np.ndarray]:
        return faces(fidelity).restore_crops(images, seeds, options)

    return restore


def run_batch(
    requests: Sequence[Mapping[str, np.ndarray]],
    run: Run,
    defaults: Callable[..., SamplingOptions],
    mode: Mode,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict[str, np.ndarray] | RequestError]:
    """Answer the requests of one dynamic batch: one ``run`` call per group of equal options and fidelity.

    Args:
        requests: each a mapping of input name -> array (see :func:`parse_request`).
        run: ``(images, options, seeds, fidelity) -> images`` (:func:`model_runner`, or the
            whole-image runner of ``flipnet-rt serve``); ``fidelity`` is ``"auto"`` for degrade.
        defaults: ``Restorer.options``.
        mode: which model this is (names the output; ``fidelity`` is refused unless restore).

    Returns:
        Per request, in order: ``{output: uint8 [b, H, W, 3]}``, or the :class:`RequestError`
        that refused it (the other requests are still answered).
    """
    parsed: list[list[Row] | RequestError] = []
    for r, inputs in enumerate(requests):
        try:
            parsed.append(parse_request(inputs, defaults, max_pixels=max_pixels, request=r, mode=mode))
        except RequestError as exc:
            parsed.append(exc)
    rows = [row for p in parsed if not isinstance(p, RequestError) for row in p]
    results: dict[tuple[int, int], np.ndarray] = {}
    for group in group_rows(rows):
        head = group[0]
        log.debug("%s: %d image(s) with %s, fidelity %s", mode.value, len(group), head.options, head.fidelity)
        outputs = run([row.image for row in group], head.options, [row.seed for row in group], head.fidelity)
        results.update({(row.request, row.index): out for row, out in zip(group, outputs)})
    name = OUTPUT_NAMES[mode]
    return [
        p if isinstance(p, RequestError) else {name: np.stack([results[(r, i)] for i in range(len(p))])}
        for r, p in enumerate(parsed)
    ]
