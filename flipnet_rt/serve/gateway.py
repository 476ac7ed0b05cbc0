# Long module: one request's checks in the order they run (header, names, shapes, options, body, forward, errors).
"""The HTTP front of ``flipnet-rt serve``: every KServe v2 request is checked before Triton sees it.

Triton (PyTriton's ``tritonserver``) listens on a private loopback port; this gateway owns the
public HTTP port. For an inference request it reads the JSON header alone first (the binary
extension's ``Inference-Header-Content-Length``), checks every input's name, datatype, shape and
byte size with Python integers (no overflow), the image against ``--max-pixels`` and the batch
against ``--max-batch``, decodes the small option tensors and runs :func:`~.protocol.parse_request`
on them with the model's own defaults, and forwards the body, unchanged, to Triton. The image
bytes are read only once the header has passed (shapes, sizes, limits). So:

* a request refused for its shapes or sizes costs its JSON header and nothing else: the image
  bytes are never buffered (they are drained and dropped while the refusal is sent, then the
  connection closes); one refused for an option value holds its (bounded) image only until then;
* a refused request never reaches Triton, so it never shares a dynamic batch with valid ones;
* every client error is a 4xx with one line ``{"error": "..."}`` naming the input and the fix;
  a server-side failure is one line too (the traceback stays in the server log);
* connections idle (or stalled mid-request) for ``idle_timeout_s`` are closed, and a body must
  arrive within ``request_timeout_s``.

Other paths (health, metadata, statistics, the restricted admin APIs with PyTriton's token) are
passed through. Readiness and liveness answer 503 as soon as :class:`Health` marks a model down
(its Python-backend stub died), while the server shuts down for its supervisor to restart it.

gRPC goes to Triton directly: the in-model checks (:mod:`.protocol`) refuse the same requests
there, but as Triton's 500s, failing their batch neighbours, and declared shapes whose byte size
overflows 64 bits are not caught before Triton's stub: the watchdog (:mod:`.watchdog`) then stops
the server (README, "Untrusted clients").
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config.options import Mode, SamplingOptions
from .protocol import FIDELITY_INPUT, IMAGE_INPUT, OPTION_INPUTS, RequestError, TooLarge, check_image, parse_request

log = logging.getLogger(__name__)

#: KServe v2 datatype of each input (the model configs' dtypes).
_OPTION_DATATYPES: dict[type, str] = {np.int64: "INT64", np.int32: "INT32", np.float32: "FP32", np.bytes_: "BYTES"}
DATATYPES: dict[str, str] = {IMAGE_INPUT: "UINT8"}
DATATYPES.update({o.name: _OPTION_DATATYPES[o.dtype] for o in OPTION_INPUTS})
_NUMPY = {"UINT8": np.uint8, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32}
_INFER = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/[^/]+)?/infer$")
_READY = re.compile(r"^/v2/(?:health/(?:ready|live)|models/(?P<model>[^/]+)(?:/versions/[^/]+)?/ready)$")
#: The in-model refusal inside PyTriton's traceback (a request the gateway let through, e.g. gRPC-only checks).
_MODEL_REFUSAL = re.compile(r"RequestError: ([^\n\\]+)")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


@dataclass(frozen=True)
class Limits:
    """What one request may be; every field is a ``flipnet-rt serve`` flag or derived from one."""

    max_pixels: int
    max_batch: int
    #: The JSON part of a request (inputs' names, shapes, options): far more than any valid one needs.
    max_header_bytes: int = 64 * 1024
    #: A request whose tensors are all JSON-encoded (no binary part): images should be binary.
    max_json_bytes: int = 32 * 1024 * 1024
    #: The option tensors' binary bytes (BYTES strings included) of one request.
    max_option_bytes: int = 64 * 1024
    idle_timeout_s: float = 30.0
    request_timeout_s: float = 60.0

    @property
    def max_binary_bytes(self) -> int:
        return self.max_batch * self.max_pixels * 3 + self.max_option_bytes


class Refusal(Exception):
    """A request answered by the gateway itself: ``status`` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Tensor:
    """One input of a request's JSON header."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    binary_size: int | None  # bytes in the binary part, or None when the values are JSON ``data``
    data: Any = None


def parse_header(raw: bytes) -> tuple[dict[str, Any], list[Tensor]]:
    """A request's JSON header -> the header and its inputs, structurally checked.

    Raises:
        Refusal: 400 for anything that is not a KServe v2 inference request.
    """
    if not raw.strip():
        raise Refusal(
            400,
            "empty request: send a KServe v2 inference request with an 'image' input "
            "(tritonclient does, see the README's serving section)",
        )
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refusal(
            400, f"the request's JSON header does not parse ({exc}); send a KServe v2 inference request"
        ) from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise Refusal(400, "the request's JSON has no 'inputs' list; send a KServe v2 inference request")
    tensors = []
    for i, entry in enumerate(header["inputs"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise Refusal(400, f"inputs[{i}]: not an object with a 'name'")
        name = entry["name"]
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(type(d) is int for d in shape) or any(d < 0 for d in shape):
            raise Refusal(400, f"input {name!r}: shape {shape!r}; send a list of non-negative integers")
        if not isinstance(entry.get("datatype"), str):
            raise Refusal(400, f"input {name!r}: no 'datatype'; send one of UINT8, INT32, INT64, FP32, BYTES")
        params = entry.get("parameters", {})
        if not isinstance(params, dict):
            raise Refusal(400, f"input {name!r}: 'parameters' is not an object")
        size = params.get("binary_data_size")
        if size is not None and (type(size) is not int or size < 0):
            raise Refusal(400, f"input {name!r}: binary_data_size {size!r}; send a non-negative integer")
        if size is None and "data" not in entry:
            raise Refusal(400, f"input {name!r}: neither 'data' nor a binary_data_size; send its values")
        tensors.append(Tensor(name, entry["datatype"], tuple(shape), size, entry.get("data")))
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise Refusal(400, f"inputs {names}: a name appears twice; send each input once")
    return header, tensors


def check_inputs(tensors: list[Tensor], mode: Mode, limits: Limits, binary_len: int) -> int:
    """Names, datatypes, shapes and byte sizes (Python ints: no overflow) of a request's inputs.

    Returns:
        The image's byte size (what the binary part must still carry for it).

    Raises:
        Refusal: 400 (a malformed input) or 413 (over ``--max-pixels`` / ``--max-batch``).
    """
    known = {IMAGE_INPUT, *(o.name for o in OPTION_INPUTS)}
    unknown = sorted(t.name for t in tensors if t.name not in known)
    if unknown:
        raise Refusal(400, f"unknown inputs {unknown}; known: {', '.join(sorted(known))}")
    if mode is not Mode.RESTORE and any(t.name == FIDELITY_INPUT for t in tensors):
        raise Refusal(400, f"input {FIDELITY_INPUT!r}: applies to restore only; leave it out of {mode.value} requests")
    by_name = {t.name: t for t in tensors}
    image = by_name.get(IMAGE_INPUT)
    if image is None:
        raise Refusal(400, f"missing input {IMAGE_INPUT!r}: send uint8 [b, H, W, 3] RGB")
    for t in tensors:
        if t.datatype != DATATYPES[t.name]:
            raise Refusal(400, f"input {t.name!r}: datatype {t.datatype}; send {DATATYPES[t.name]}")
    try:
        check_image(image.shape, limits.max_pixels, f"shape {list(image.shape)}")
    except RequestError as exc:
        raise Refusal(413 if isinstance(exc, TooLarge) else 400, str(exc)) from None
    rows = image.shape[0]
    if rows < 1:
        raise Refusal(400, f"input {IMAGE_INPUT!r}: shape {list(image.shape)} is empty")
    if rows > limits.max_batch:
        raise Refusal(
            413,
            f"input {IMAGE_INPUT!r}: {rows} images in one request, over this server's "
            f"--max-batch {limits.max_batch}; send fewer per request",
        )
    declared = 0
    for t in tensors:
        if t.name != IMAGE_INPUT and t.shape != (rows, 1):
            raise Refusal(400, f"input {t.name!r}: shape {list(t.shape)}, expected [{rows}, 1] (one per image)")
        if t.binary_size is None:
            continue
        count = 1
        for d in t.shape:
            count *= d
        if t.datatype != "BYTES" and t.binary_size != count * np.dtype(_NUMPY[t.datatype]).itemsize:
            raise Refusal(
                400,
                f"input {t.name!r}: binary_data_size {t.binary_size} does not match shape "
                f"{list(t.shape)} of {t.datatype} ({count * np.dtype(_NUMPY[t.datatype]).itemsize} "
                f"bytes)",
            )
        if t.name != IMAGE_INPUT and t.binary_size > limits.max_option_bytes:
            raise Refusal(413, f"input {t.name!r}: {t.binary_size} bytes; an option is a few bytes per image")
        declared += t.binary_size
    if declared != binary_len:
        raise Refusal(
            400,
            f"the binary part is {binary_len} bytes but the inputs declare {declared}; "
            f"send each input's binary_data_size",
        )
    return image.binary_size or 0


def decode_options(tensors: list[Tensor], binary: Mapping[str, bytes]) -> dict[str, np.ndarray]:
    """The option tensors (not the image) as numpy arrays, from JSON ``data`` or their binary bytes."""
    out = {}
    for t in tensors:
        if t.name == IMAGE_INPUT:
            continue
        if t.binary_size is None:
            try:
                values = np.asarray(t.data, dtype=np.object_ if t.datatype == "BYTES" else _NUMPY[t.datatype])
            except (TypeError, ValueError, OverflowError):
                raise Refusal(400, f"input {t.name!r}: its data are not {t.datatype} values") from None
            if values.size != t.shape[0]:
                raise Refusal(400, f"input {t.name!r}: {values.size} values for shape {list(t.shape)}")
            if t.datatype == "BYTES":
                values = np.array([v.encode() if isinstance(v, str) else v for v in values.reshape(-1)], np.object_)
            out[t.name] = values.reshape(t.shape)
        elif t.datatype == "BYTES":
            out[t.name] = _bytes_tensor(t, binary[t.name])
        else:
            out[t.name] = np.frombuffer(binary[t.name], dtype=_NUMPY[t.datatype]).reshape(t.shape)
    return out


def _bytes_tensor(t: Tensor, raw: bytes) -> np.ndarray:
    """KServe's binary BYTES: each element a 4-byte little-endian length, then its bytes."""
    values, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise Refusal(400, f"input {t.name!r}: truncated BYTES element")
        n = int.from_bytes(raw[offset : offset + 4], "little")
        values.append(raw[offset + 4 : offset + 4 + n])
        offset += 4 + n
        if offset > len(raw):
            raise Refusal(400, f"input {t.name!r}: truncated BYTES element")
    count = t.shape[0] * t.shape[1]
    if len(values) != count:
        raise Refusal(400, f"input {t.name!r}: {len(values)} strings for shape {list(t.shape)}")
    return np.array(values, dtype=np.object_).reshape(t.shape)


def check_request(
    tensors: list[Tensor],
    binary: Mapping[str, bytes],
    mode: Mode,
    defaults: Callable[..., SamplingOptions],
    limits: Limits,
) -> None:
    """The option values, checked exactly as the model will (:func:`~.protocol.parse_request`) on a
    zero-memory stand-in for the image. Raises :class:`Refusal` (400)."""
    inputs: dict[str, np.ndarray] = decode_options(tensors, binary)
    image = next(t for t in tensors if t.name == IMAGE_INPUT)
    inputs[IMAGE_INPUT] = np.broadcast_to(np.zeros((), np.uint8), image.shape)
    try:
        parse_request(inputs, defaults, max_pixels=limits.max_pixels, mode=mode)
    except RequestError as exc:
        raise Refusal(400, str(exc)) from None


@dataclass
class Health:
    """Which models are down (their stub process died); shared by the gateway and the watchdog."""

    down: dict[str, str] = field(default_factory=dict)  # model -> reason
    on_down: Callable[[str, str], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mark_down(self, model: str, reason: str) -> None:
        with self._lock:
            if model in self.down:
                return
            self.down[model] = reason
        log.error("model %s is down: %s", model, reason)
        if self.on_down is not None:
            self.on_down(model, reason)


class Gateway:
    """The aiohttp server in front of Triton's HTTP port, on its own thread and event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        upstream: str,
        models: Mapping[str, Mode],
        defaults: Callable[..., SamplingOptions],
        limits: Limits,
        health: Health,
    ) -> None:
        self.host, self.port, self.upstream = host, port, upstream.rstrip("/")
        self.models, self.defaults, self.limits, self.health = dict(models), defaults, limits, health
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the public port and serve on a background thread (returns once listening)."""
        self._thread = threading.Thread(target=self._main, name="flipnet-gateway", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise RuntimeError(f"HTTP port {self.host}:{self.port}: {self._error}") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._started.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        import aiohttp
        from aiohttp import web

        self._stop = asyncio.Event()
        app = web.Application(client_max_size=self.limits.max_binary_bytes + self.limits.max_header_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # keepalive_timeout closes a connection idle that long, before or between requests and with
        # headers half sent; lingering: after a refusal, the unread body is drained (not kept) this
        # long so the client can read the answer, then the connection closes.
        runner = web.AppRunner(app, keepalive_timeout=self.limits.idle_timeout_s, lingering_time=2.0, access_log=None)
        await runner.setup()
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=self.limits.idle_timeout_s / 2)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False
        )
        try:
            await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
            self._started.set()
            await self._stop.wait()
        finally:
            await self._session.close()
            await runner.cleanup()

    # -- requests ----------------------------------------------------------------------------
    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        try:
            ready = _READY.match(request.path)
            if ready and self.health.down and (ready.group("model") in self.health.down or not ready.group("model")):
                raise Refusal(503, f"down: {'; '.join(f'{m}: {r}' for m, r in self.health.down.items())}")
            infer = _INFER.match(request.path)
            if infer and request.method == "POST" and infer.group("model") in self.models:
                return await self._infer(request, infer.group("model"))
            body = await self._read(request, request.content_length or 0, self.limits.max_header_bytes)
            return await self._forward(request, body, model=None)
        except Refusal as exc:
            response = web.json_response({"error": str(exc)}, status=exc.status)
            if exc.status in (400, 408, 411, 413, 415):
                response.force_close()  # the unread body (if any) is drained for lingering_time, not kept
            return response

    async def _read(self, request: Any, n: int, limit: int) -> bytes:
        if n > limit:
            raise Refusal(413, f"{request.path}: a {n}-byte body, over {limit}")
        if n == 0:
            return b""
        try:
            return await asyncio.wait_for(request.content.readexactly(n), self.limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise Refusal(408, f"the request body did not arrive within {self.limits.request_timeout_s:g} s") from None
        except asyncio.IncompleteReadError:
            raise Refusal(400, "the connection closed before the request body ended") from None

    async def _infer(self, request: Any, model: str) -> Any:
        if model in self.health.down:
            raise Refusal(503, f"model {model} is down ({self.health.down[model]}); the server is restarting")
        if request.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise Refusal(415, f"Content-Encoding {request.headers['Content-Encoding']}: send the request uncompressed")
        total = request.content_length
        if total is None:
            raise Refusal(411, "no Content-Length: send the request with its length (not chunked)")
        head_len = request.headers.get("Inference-Header-Content-Length")
        if head_len is None:  # all JSON
            raw = await self._read(request, total, self.limits.max_json_bytes)
            _, tensors = parse_header(raw)
            if any(t.binary_size is not None for t in tensors):
                raise Refusal(400, "binary_data_size given without an Inference-Header-Content-Length header")
            check_inputs(tensors, self.models[model], self.limits, 0)
            image = next(t for t in tensors if t.name == IMAGE_INPUT)
            _check_json_image(image)
            check_request(tensors, {}, self.models[model], self.defaults, self.limits)
            return await self._forward(request, raw, model)
        try:
            head_len = int(head_len)
        except ValueError:
            raise Refusal(400, f"Inference-Header-Content-Length {head_len!r} is not a number") from None
        if not 0 < head_len <= total:
            raise Refusal(400, f"Inference-Header-Content-Length {head_len} does not fit the {total}-byte body")
        if total - head_len > self.limits.max_binary_bytes:
            raise Refusal(
                413,
                f"a {total - head_len}-byte binary part, over this server's limit of "
                f"{self.limits.max_binary_bytes} (--max-batch x --max-pixels x 3)",
            )
        raw = await self._read(request, head_len, self.limits.max_header_bytes)
        _, tensors = parse_header(raw)
        check_inputs(tensors, self.models[model], self.limits, total - head_len)
        # The options sit in the binary part in the order the header lists them; the image is
        # read only when everything before and after it has been checked.
        binary: dict[str, bytes] = {}
        options_only = {t.name for t in tensors if t.name != IMAGE_INPUT and t.binary_size is not None}
        chunks = []
        for t in tensors:
            if t.binary_size is None:
                continue
            data = await self._read(request, t.binary_size, self.limits.max_binary_bytes)
            chunks.append(data)
            if t.name in options_only:
                binary[t.name] = data
        check_request(tensors, binary, self.models[model], self.defaults, self.limits)
        return await self._forward(request, raw + b"".join(chunks), model)

    async def _forward(self, request: Any, body: bytes, model: str | None) -> Any:
        from aiohttp import web

        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.setdefault("Accept-Encoding", "identity")  # the client's choice, not aiohttp's default gzip
        url = self.upstream + request.path_qs
        async with self._session.request(request.method, url, data=body, headers=headers) as upstream:
            payload = await upstream.read()
            status = upstream.status
            keep = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if status >= 500 and model is not None:
            return self._server_error(model, payload, status)
        return web.Response(status=status, body=payload, headers=keep)

    def _server_error(self, model: str, payload: bytes, status: int) -> Any:
        """Triton's 5xx for an inference: one line for the client, the whole text in the log."""
        from aiohttp import web

        text = payload.decode("utf-8", "replace")
        try:
            text = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            pass
        refused = _MODEL_REFUSAL.search(text)
        if refused:
            return web.json_response({"error": refused.group(1).strip()}, status=400)
        if "Stub process" in text and "is not healthy" in text:
            self.health.mark_down(model, "its Triton Python-backend stub process died")
            return web.json_response(
                {"error": f"model {model} is down (its process died); the server is restarting, retry shortly"},
                status=503,
            )
        log.error("%s: Triton answered %d: %s", model, status, text)
        first = text.strip().splitlines()[0] if text.strip() else ""
        line = first if "Traceback" not in first and "/" not in first else "see the server log"
        return web.json_response({"error": f"{model}: the inference failed on the server ({line})"}, status=status)


def _check_json_image(image: Tensor) -> None:
    """A JSON-encoded image holds exactly its shape's number of values (checked without decoding them
    all into a deep structure: the JSON parser already has)."""
    count = 1
    for d in image.shape:
        count *= d
    flat = image.data
    while isinstance(flat, list) and flat and isinstance(flat[0], list):
        flat = [v for row in flat for v in (row if isinstance(row, list) else [row])]
    if not isinstance(flat, list) or len(flat) != count:
        raise Refusal(
            400,
            f"input {IMAGE_INPUT!r}: {len(flat) if isinstance(flat, list) else 0} values for shape {list(image.shape)}",
        )
