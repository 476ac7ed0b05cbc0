"""A hostile-client fuzz of ``flipnet-rt serve`` (issue 27): raw KServe v2 HTTP, no client library.

``make fuzz`` runs it all against a fresh server on loopback (the demo engine)::

    .venv-serve/bin/python tests/serve_fuzz.py --model models/demo-onnx

Cases: valid requests; malformed ones (JSON, shapes, byte sizes whose product overflows 64 bits,
datatypes, option values, encodings); a refused request batched with valid neighbours; refused
uploads (declared over ``--max-pixels``, body held back) and the server's memory after them;
stalled connections and the idle timeout; finally a gRPC request that kills a model's stub
process, which must stop the server with exit status 3 and leave nothing in ``/dev/shm``. Each
case prints one line; the exit status is the number of failed cases. ``tests/serve/test_hostile.py``
runs the quick cases in ``make test``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Words a one-line client error must not carry (a traceback, a server path).
LEAKS = ("Traceback", 'File "', ".py", "/work/", "site-packages")


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float

    @property
    def error(self) -> str:
        try:
            return json.loads(self.body).get("error", "")
        except (ValueError, AttributeError):
            return self.body.decode(errors="replace")


def request(
    port: int,
    model: str,
    header: object,
    binary: bytes = b"",
    *,
    send_body: bool = True,
    headers: dict[str, str] | None = None,
    raw_header: bytes | None = None,
    timeout: float = 120,
) -> Reply:
    """One POST /v2/models/MODEL/infer over a fresh socket; ``send_body=False`` sends the JSON
    header and no binary part (a client whose upload is refused must get its answer anyway)."""
    head = raw_header if raw_header is not None else json.dumps(header).encode()
    body = head + binary
    extra = {"Inference-Header-Content-Length": str(len(head))} if binary or not send_body else {}
    extra.update(headers or {})
    length = extra.pop("Content-Length", str(len(body) if send_body else len(head) + _declared(header)))
    lines = [
        f"POST /v2/models/{model}/infer HTTP/1.1",
        "Host: fuzz",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body if send_body else head))
        data = _read_response(s)
    return _reply(data, time.monotonic() - start)


def _declared(header: object) -> int:
    try:
        return sum(int(t.get("parameters", {}).get("binary_data_size", 0)) for t in header["inputs"])  # type: ignore[index]
    except (TypeError, KeyError, AttributeError, ValueError):
        return 0


def _read_response(s: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = s.recv(1 << 16)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if lengths and len(rest) >= int(lengths[0].split(b":")[1]):
                break
    return data


def _reply(data: bytes, seconds: float) -> Reply:
    if not data:
        return Reply(0, b"", seconds)
    head, _, body = data.partition(b"\r\n\r\n")
    return Reply(int(head.split(b" ", 2)[1]), body, seconds)


def image_header(shape: list[int], size: int | None = None, **options: object) -> dict:
    """A binary ``image`` of ``shape`` (``size`` bytes, default its product) and JSON-encoded options."""
    count = int(np.prod(shape, dtype=object)) if size is None else size
    inputs: list[dict] = [
        {"name": "image", "datatype": "UINT8", "shape": shape, "parameters": {"binary_data_size": count}}
    ]
    types = {
        "seed": "INT64",
        "steps": "INT32",
        "t_cond": "INT32",
        "color_fix": "INT32",
        "sampler": "BYTES",
        "spacing": "BYTES",
    }
    for name, value in options.items():
        inputs.append({"name": name, "datatype": types.get(name, "FP32"), "shape": [shape[0], 1], "data": [value]})
    return {"inputs": inputs}


def face(size: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8).tobytes()


@dataclass(frozen=True)
class Case:
    """One request and what its answer must be: ``status`` and a fragment of the error."""

    name: str
    send: Callable[[int], Reply]
    status: int
    contains: str = ""


def _opt(**options: object) -> Callable[[int], Reply]:
    return lambda port: request(port, "restore", image_header([1, 64, 64, 3], **options), face())


def _raw(text: bytes, headers: dict[str, str] | None = None) -> Callable[[int], Reply]:
    return lambda port: request(port, "restore", None, b"", raw_header=text, headers=headers)


NAN = float("nan")
CASES: list[Case] = [
    Case("valid restore", lambda p: request(p, "restore", image_header([1, 64, 64, 3], seed=3), face()), 200),
    Case("valid degrade", lambda p: request(p, "degrade", image_header([1, 64, 64, 3]), face()), 200),
    Case(
        "valid, JSON-encoded image",
        lambda p: request(
            p, "restore", {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 8, 8, 3], "data": [7] * 192}]}
        ),
        200,
    ),
    Case("empty body", _raw(b""), 400, "empty request"),
    Case("not JSON", _raw(b"{not json"), 400, "does not parse"),
    Case("JSON array", _raw(b"[1, 2]"), 400, "no 'inputs' list"),
    Case(
        "no image",
        _raw(json.dumps({"inputs": [{"name": "steps", "datatype": "INT32", "shape": [1, 1], "data": [4]}]}).encode()),
        400,
        "missing input 'image'",
    ),
    Case(
        "negative dims",
        lambda p: request(p, "restore", image_header([1, -64, 64, 3], size=12288), face()),
        400,
        "non-negative integers",
    ),
    Case(
        "dims overflowing 64 bits",
        lambda p: request(p, "restore", image_header([1, 2**62 + 64, 64, 3], size=12288), face()),
        413,
        "--max-pixels",
    ),
    Case(
        "no batch axis",
        lambda p: request(p, "restore", image_header([64, 64, 3]), face()),
        400,
        "one image is [1, H, W, 3]",
    ),
    Case(
        "four channels",
        lambda p: request(p, "restore", image_header([1, 64, 48, 4]), face()),
        400,
        "send uint8 [b, H, W, 3]",
    ),
    Case(
        "float32 image",
        lambda p: request(
            p,
            "restore",
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "FP32",
                        "shape": [1, 64, 64, 3],
                        "parameters": {"binary_data_size": 49152},
                    }
                ]
            },
            face() * 4,
        ),
        400,
        "datatype FP32; send UINT8",
    ),
    Case(
        "binary size mismatch",
        lambda p: request(p, "restore", image_header([1, 64, 64, 3], size=100), face()[:100]),
        400,
        "does not match shape",
    ),
    Case(
        "header length beyond the body",
        lambda p: request(
            p, "restore", image_header([1, 64, 64, 3]), face(), headers={"Inference-Header-Content-Length": "999999"}
        ),
        400,
        "does not fit",
    ),
    Case("unknown input", _opt(colour=1.0), 400, "unknown inputs ['colour']"),
    Case(
        "too many images", lambda p: request(p, "restore", image_header([9, 64, 64, 3]), face() * 9), 413, "--max-batch"
    ),
    Case("steps -1", _opt(steps=-1), 400, "steps: -1"),
    Case("steps 0", _opt(steps=0), 400, "steps: 0"),
    Case("steps 1001", _opt(steps=1001), 400, "steps: 1001; use 1 to 1000"),
    Case("steps 2^31-1", _opt(steps=2**31 - 1), 400, "steps: 2147483647"),
    Case("unknown sampler", _opt(sampler="fast"), 400, "sampler: 'fast' is not one of"),
    Case("guidance NaN", _opt(guidance=NAN), 400, "guidance: nan is not a finite number"),
    Case("guidance inf", _opt(guidance=float("inf")), 400, "guidance: inf is not a finite number"),
    Case("eta NaN", _opt(eta=NAN), 400, "eta: nan"),
    Case("strength NaN", _opt(strength=NAN), 400, "strength: nan"),
    Case("color_fix 31", _opt(color_fix=31), 400, "color_fix: 31"),
    Case("t_cond 5000", _opt(t_cond=5000), 400, "t_cond: 5000"),
    Case("seed -1", _opt(seed=-1), 400, "seed: -1 is outside"),
    Case("fidelity 2", _opt(fidelity=2.0), 400, "fidelity: 2.0 is outside [0, 1]"),
    Case(
        "fidelity on degrade",
        lambda p: request(p, "degrade", image_header([1, 64, 64, 3], fidelity=0.5), face()),
        400,
        "applies to restore only",
    ),
    Case(
        "gzip body",
        lambda p: request(p, "restore", image_header([1, 64, 64, 3]), face(), headers={"Content-Encoding": "gzip"}),
        415,
        "uncompressed",
    ),
    Case(
        "over --max-pixels, body held back",
        lambda p: request(p, "restore", image_header([1, 8000, 8000, 3]), send_body=False),
        413,
        "--max-pixels",
    ),
]


def check(case: Case, reply: Reply) -> str | None:
    """None when the reply is what the case expects, else why not."""
    if reply.status != case.status:
        return f"status {reply.status} (expected {case.status}): {reply.body[:200]!r}"
    if case.status >= 400:
        error = reply.error
        if case.contains not in error:
            return f"error {error!r} lacks {case.contains!r}"
        if "\n" in error or any(word in error for word in LEAKS):
            return f"error is not one clean line: {error[:300]!r}"
    return None


def neighbours(port: int) -> str | None:
    """Three valid requests and one refused, sent together: the valid ones are answered."""
    sends = [lambda i=i: request(port, "restore", image_header([1, 64, 64, 3], seed=i), face(seed=i)) for i in range(3)]
    sends.append(lambda: request(port, "restore", image_header([1, 64, 64, 3], steps=-1), face()))
    replies: list[Reply | None] = [None] * 4
    threads = [threading.Thread(target=lambda i=i: replies.__setitem__(i, sends[i]())) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [r.status if r else 0 for r in replies]
    return None if statuses == [200, 200, 200, 400] else f"statuses {statuses}"


def stalled(port: int, idle_timeout_s: float, n: int = 16) -> str | None:
    """``n`` connections that stall (nothing sent, or half a header) are closed by the idle timeout
    while a valid request is still answered."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for i, s in enumerate(socks):
        if i % 2:
            s.sendall(b"POST /v2/models/restore/infer HTTP/1.1\r\nHost: fuzz\r\n")
    ok = request(port, "restore", image_header([1, 64, 64, 3]), face())
    if ok.status != 200:
        return f"a valid request beside {n} stalled connections: status {ok.status}"
    deadline = time.monotonic() + idle_timeout_s + 10
    open_ = list(socks)
    while open_ and time.monotonic() < deadline:
        for s in list(open_):
            s.settimeout(0.2)
            try:
                if s.recv(1024) == b"":
                    open_.remove(s)
            except TimeoutError:
                pass
            except OSError:
                open_.remove(s)
    for s in socks:
        s.close()
    return None if not open_ else f"{len(open_)} of {n} stalled connections still open after {idle_timeout_s + 10:g} s"


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and everything below it (MiB)."""
    from flipnet_rt.serve.watchdog import descendants

    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def refused_uploads(port: int, pid: int, n: int = 5, streamed_mb: int = 192) -> tuple[str | None, str]:
    """``n`` uploads declared over ``--max-pixels`` whose body the client does send: refused
    before the body is read; the server's memory afterwards within 50 MB of before."""
    before = tree_rss_mb(pid)
    for _ in range(n):
        header = image_header([1, 8000, 8000, 3])
        head = json.dumps(header).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(
                (
                    f"POST /v2/models/restore/infer HTTP/1.1\r\nHost: fuzz\r\nContent-Length: "
                    f"{len(head) + 8000 * 8000 * 3}\r\nInference-Header-Content-Length: {len(head)}\r\n\r\n"
                ).encode()
                + head
            )
            chunk, sent = bytes(1 << 20), 0
            try:  # keep sending until the server closes: it must not wait for (or keep) the body
                while sent < streamed_mb:
                    s.sendall(chunk)
                    sent += 1
            except OSError:
                pass
            reply = _reply(_read_response(s), 0)
        if reply.status not in (0, 413):
            return f"status {reply.status}", ""
    time.sleep(1)
    after = tree_rss_mb(pid)
    line = f"server RSS {before:.0f} MB before, {after:.0f} MB after {n} refused uploads"
    return (None if after - before < 50 else line), line


def start(
    model: str, idle_timeout_s: float, max_pixels: int | None = None, log: Path | None = None
) -> tuple[subprocess.Popen, dict[str, int]]:
    """A server on free loopback ports, ready for requests."""
    socks = [socket.socket() for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    http, grpc, metrics = (s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    cmd = [
        sys.executable,
        "-m",
        "flipnet_rt",
        "serve",
        "--model",
        model,
        "--backend",
        "onnxruntime",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--max-batch",
        "8",
        "--max-queue-delay-ms",
        "200",
        "--idle-timeout",
        str(idle_timeout_s),
    ]
    if max_pixels:
        cmd += ["--max-pixels", str(max_pixels)]
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", http), timeout=2) as s:
                s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: fuzz\r\n\r\n")
                if _reply(_read_response(s), 0).status == 200:
                    return proc, {"http": http, "grpc": grpc, "metrics": metrics}
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server was not ready in 180 s")


def kill_stub_over_grpc(grpc_port: int) -> str:
    """Declared dims whose byte size overflows 64 bits to the payload's size, over gRPC (which
    the gateway does not see): Triton's stub for ``restore`` dies. Returns the client's error."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        request_ = service_pb2.ModelInferRequest(model_name="restore")
        tensor = request_.inputs.add()
        tensor.name, tensor.datatype = "image", "UINT8"
        tensor.shape.extend([1, 2**62 + 64, 64, 3])
        request_.raw_input_contents.append(bytes(64 * 64 * 3))
        try:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request_, timeout=60)
        except grpc.RpcError as exc:
            return f"{exc.code()}: {exc.details()}"
    return "answered"


def stop(proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM, then SIGKILL to the group after ``timeout_s`` (a SIGKILL alone leaves PyTriton's
    /dev/shm files behind)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def shm_files(pid: int) -> list[str]:
    return glob.glob(f"/dev/shm/pytrtion{pid}-*")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "demo-onnx"))
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    args = parser.parse_args()
    failures = 0

    def report(name: str, problem: str | None, detail: str = "") -> None:
        nonlocal failures
        failures += problem is not None
        print(
            f"{'ok  ' if problem is None else 'FAIL'} {name}{': ' + (problem or detail) if problem or detail else ''}",
            flush=True,
        )

    proc, ports = start(args.model, args.idle_timeout)
    try:
        for case in CASES:
            reply = case.send(ports["http"])
            report(case.name, check(case, reply), f"{reply.status} {reply.error[:100]}" if reply.status >= 400 else "")
        report("a refused request among valid neighbours", neighbours(ports["http"]))
        warm = tree_rss_mb(proc.pid)
        problem, line = refused_uploads(ports["http"], proc.pid)
        report("5 refused 192 MB uploads", problem, line)
        report("16 stalled connections", stalled(ports["http"], args.idle_timeout))
        after = tree_rss_mb(proc.pid)
        report(
            "server RSS after the run vs after warm-up",
            None if after - warm < 50 else f"+{after - warm:.0f} MB",
            f"{warm:.0f} -> {after:.0f} MB",
        )
        start_s = time.monotonic()
        error = kill_stub_over_grpc(ports["grpc"])
        try:
            status = proc.wait(30)
        except subprocess.TimeoutExpired:
            status = None
        report(
            "a gRPC request that kills a stub stops the server with exit 3",
            None if status == 3 else f"exit status {status}",
            f"exit 3 after {time.monotonic() - start_s:.1f} s (client: {error[:80]})",
        )
        report("no /dev/shm file left", None if not shm_files(proc.pid) else str(shm_files(proc.pid)))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"{failures} failed", flush=True)
    return failures


if __name__ == "__main__":
    sys.exit(main())
