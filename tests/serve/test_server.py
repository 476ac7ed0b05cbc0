"""`flipnet-rt serve` end to end: one server on loopback (the demo engine) for the whole module.

Requests go through tritonclient over HTTP and gRPC. Checked: every result is byte-identical to
the bytes of the served contract (``tests/helpers.served``: ``Restorer.restore([image], options, [seed])``
blended by the model's fidelity estimator) whatever it was batched with (mixed options in one
batch included); Triton formed batches of 4 or more from 16 concurrent requests; an overload
beyond the queue limit is rejected (before the accepted requests finish) and the server still
serves; the optional ``fidelity`` input works per row; malformed requests get clear errors;
nothing listens outside loopback; SIGTERM stops it within 30 s. The shutdown test is last in this
module: it stops the shared server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import serve_fuzz
from helpers import face_like, served

MAX_BATCH = 8
QUEUE = 16
MAX_PIXELS = 256 * 256
#: Per-request options: half the requests send the model's own defaults, half these. Every request
#: carries the same set of inputs: Triton batches only requests whose inputs agree in names and shapes.
OTHER = {"steps": 2, "sampler": "dpmpp-2m", "guidance": 2.0}


class Server:
    def __init__(self, proc: subprocess.Popen, ports: dict[str, int], log: Path) -> None:
        self.proc, self.ports, self.log = proc, ports, log

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def server(demo_engine, tmp_path_factory):
    import tritonclient.http as httpclient

    http, grpc, metrics = _free_ports(3)
    log = tmp_path_factory.mktemp("serve") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "flipnet_rt",
        "serve",
        "--model",
        str(demo_engine),
        "--backend",
        "onnxruntime",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--max-batch",
        str(MAX_BATCH),
        "--max-queue-delay-ms",
        "200",
        "--max-queue-size",
        str(QUEUE),
        "--max-pixels",
        str(MAX_PIXELS),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(proc, {"http": http, "grpc": grpc, "metrics": metrics}, log)
    client = httpclient.InferenceServerClient(srv.http)
    deadline = time.monotonic() + 180  # a start is seconds; the bound only stops a broken start hanging
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode} while starting:\n{srv.log_tail()}")
        try:
            if (
                client.is_server_ready()
                and client.is_model_ready("restore")
                and client.is_model_ready("degrade")
                and client.is_model_ready("restore_image")
            ):
                break
        except Exception:  # not listening yet
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server was not ready in 180 s:\n{srv.log_tail()}")
        time.sleep(0.5)
    yield srv
    serve_fuzz.stop(proc)


@pytest.fixture(scope="module")
def reference(demo_engine):
    """The Restorer the server runs, in this process: results to compare bytes with."""
    from flipnet_rt.runtime.restorer import Restorer

    return Restorer.load(demo_engine, backend="onnxruntime")


@pytest.fixture(scope="module")
def cases(reference):
    """16 requests (image [64, 64, 3], seed, options alternating between the model's defaults and
    OTHER) and the bytes `served(...)` (Restorer.restore + the fidelity blend) gives for each alone."""
    defaults = reference.options()
    default = {"steps": defaults.steps, "sampler": defaults.sampler.value, "guidance": float(defaults.guidance)}
    out = []
    for image, seed, opts in [(face_like(64, i), 1000 + i, default if i % 2 == 0 else OTHER) for i in range(16)]:
        expected = served(reference, image, reference.options(**opts), seed)
        out.append((image, seed, opts, expected))
    return out


def _inputs(module, image: np.ndarray, seed: int | None = None, **options) -> list:
    """tritonclient InferInput list for one request of one image ([1, H, W, 3])."""
    batch = image[None]
    tensors = [("image", batch, "UINT8")]
    if seed is not None:
        tensors.append(("seed", np.array([[seed]], np.int64), "INT64"))
    for name, value in options.items():
        if isinstance(value, str):
            tensors.append((name, np.array([[value.encode()]], dtype=np.object_), "BYTES"))
        elif isinstance(value, float):
            tensors.append((name, np.array([[value]], np.float32), "FP32"))
        else:
            tensors.append((name, np.array([[value]], np.int32), "INT32"))
    inputs = []
    for name, array, dtype in tensors:
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _batch_sizes(server) -> dict[int, int]:
    """Triton's own statistics: batch size -> executions, for the restore model."""
    import tritonclient.http as httpclient

    stats = httpclient.InferenceServerClient(server.http).get_inference_statistics("restore")
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["model_stats"][0]["batch_stats"]}


def test_http_concurrent_requests_are_batched_and_byte_identical(server, cases):
    import tritonclient.http as httpclient

    before = _batch_sizes(server)
    client = httpclient.InferenceServerClient(server.http, concurrency=len(cases))
    pending = [
        client.async_infer("restore", _inputs(httpclient, image, seed, **opts)) for image, seed, opts, _ in cases
    ]
    results = [p.get_result().as_numpy("restored") for p in pending]
    after = _batch_sizes(server)
    seen = {
        size: after.get(size, 0) - before.get(size, 0) for size in after if after.get(size, 0) > before.get(size, 0)
    }
    print(f"batch sizes Triton formed (size: executions): {seen}")
    for (image, seed, opts, expected), got in zip(cases, results):
        assert got.shape == (1, *image.shape) and got.dtype == np.uint8
        diff = np.abs(got[0].astype(int) - expected.astype(int)).max()
        assert diff == 0, f"seed {seed} options {opts}: max uint8 difference {diff} from Restorer.restore alone"
    assert max(seen) >= 4, f"16 concurrent requests never formed a batch of 4 or more: {seen}"


def test_grpc_concurrent_requests_are_byte_identical(server, cases):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc)
    done: dict[int, object] = {}
    finished = threading.Event()
    lock = threading.Lock()

    def callback(index):
        def record(result, error):
            with lock:
                done[index] = error if error is not None else result.as_numpy("restored")
                if len(done) == len(cases):
                    finished.set()

        return record

    for i, (image, seed, opts, _) in enumerate(cases):
        client.async_infer("restore", _inputs(grpcclient, image, seed, **opts), callback=callback(i))
    assert finished.wait(300), f"only {len(done)} of {len(cases)} gRPC responses came back"
    for i, (_image, seed, opts, expected) in enumerate(cases):
        assert not isinstance(done[i], Exception), f"request {i}: {done[i]}"
        diff = np.abs(done[i][0].astype(int) - expected.astype(int)).max()
        assert diff == 0, f"gRPC seed {seed} options {opts}: max uint8 difference {diff}"
    client.close()


def test_whole_images_match_the_face_restorer(server, reference):
    """``restore_image``: a whole picture with two faces (lfw/val photos composited), every face
    detected, restored and pasted back: the same bytes as FaceRestorer.restore_image in-process."""
    import tritonclient.http as httpclient
    from PIL import Image
    from synthetic.faces import group_picture

    from flipnet_rt.faces.pipeline import FaceRestorer

    data = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lfw" / "val"
    photos = sorted(data.glob("*.jpg"))[:2]
    if len(photos) < 2:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{data}: the lfw/val faces are missing (CI must have ../shared/data)")
        pytest.skip(f"{data}: the lfw/val faces are missing")
    picture, _ = group_picture(
        [np.asarray(Image.open(p).convert("RGB")) for p in photos],
        np.random.default_rng(0),
        height=180,
        width=320,
        eye_distance=(16.0, 20.0),
        max_angle=10.0,
    )
    got = (
        httpclient.InferenceServerClient(server.http)
        .infer("restore_image", _inputs(httpclient, picture, 9))
        .as_numpy("restored")[0]
    )
    expected, results = FaceRestorer(reference, sampling=reference.options()).restore_image(picture, 9)
    assert sum(r.restored for r in results) == 2
    assert got.shape == picture.shape and np.array_equal(got, expected)
    assert not np.array_equal(got, picture)


def test_degrade_matches_restorer(server, reference):
    import tritonclient.http as httpclient

    image = face_like(64, 40)
    got = (
        httpclient.InferenceServerClient(server.http)
        .infer("degrade", _inputs(httpclient, image, 5))
        .as_numpy("degraded")
    )
    expected = reference.degrade([image], reference.options(), [5])[0]
    assert np.array_equal(got[0], expected)


def test_absent_seed_is_seed_zero_and_rows_are_independent(server, reference):
    """A request of two rows: row i is served(image_i, defaults, seed_i) (fidelity auto); no seed = 0."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http)
    images = np.stack([face_like(64, 50), face_like(64, 51)])
    seeds = np.array([[3], [4]], np.int64)
    image_in = httpclient.InferInput("image", list(images.shape), "UINT8")
    image_in.set_data_from_numpy(images)
    seed_in = httpclient.InferInput("seed", [2, 1], "INT64")
    seed_in.set_data_from_numpy(seeds)
    got = client.infer("restore", [image_in, seed_in]).as_numpy("restored")
    for i in range(2):
        assert np.array_equal(got[i], served(reference, images[i], reference.options(), int(seeds[i, 0])))
    alone = client.infer("restore", _inputs(httpclient, images[0])).as_numpy("restored")
    assert np.array_equal(alone[0], served(reference, images[0], reference.options(), 0))


def test_fidelity_input_per_row_and_its_refusals(server, reference, cases):
    """``fidelity`` [b, 1] FP32: row 0 at 0 is Restorer.restore's bytes, row 1 at 1 the input back;
    NaN on restore, and any fidelity on degrade, get clear errors (see test_fidelity_input.py)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(server.http)
    (a, seed_a, _, _), (b, seed_b, _, _) = cases[0], cases[2]  # cases[0]: the model's defaults
    expected_a = reference.restore([a], reference.options(), [seed_a])[0]  # fidelity 0: the restoration
    images = np.stack([a, b])
    tensors = [
        ("image", images, "UINT8"),
        ("seed", np.array([[seed_a], [seed_b]], np.int64), "INT64"),
        ("fidelity", np.array([[0.0], [1.0]], np.float32), "FP32"),
    ]
    inputs = []
    for name, array, dtype in tensors:
        inputs.append(httpclient.InferInput(name, list(array.shape), dtype))
        inputs[-1].set_data_from_numpy(array)
    got = client.infer("restore", inputs).as_numpy("restored")
    diffs = [
        int(np.abs(got[0].astype(int) - expected_a.astype(int)).max()),
        int(np.abs(got[1].astype(int) - b.astype(int)).max()),
    ]
    print(f"fidelity 0: max uint8 difference {diffs[0]} from Restorer.restore; fidelity 1: {diffs[1]} from the input")
    assert diffs == [0, 0]
    for model, value, expected in (
        ("restore", float("nan"), "row 0: fidelity: nan is outside [0, 1]"),
        ("degrade", 0.5, "'fidelity': applies to restore only"),
    ):
        fidelity = httpclient.InferInput("fidelity", [1, 1], "FP32")
        fidelity.set_data_from_numpy(np.array([[value]], np.float32))
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, [*_inputs(httpclient, a, seed_a), fidelity])
        print(f"{model}, fidelity {value}: {str(info.value).splitlines()[0][:300]}")
        assert expected in str(info.value)
    assert server.proc.poll() is None


@pytest.mark.parametrize(
    "case, expected",
    [
        ("float32 image", "input 'image': datatype FP32; send UINT8"),
        ("four channels", "shape"),
        ("over the size limit", "--max-pixels"),
        ("steps 0", "steps: 0"),
        ("unknown sampler", "sampler: 'fast' is not one of"),
    ],
)
def test_malformed_requests_get_clear_errors_and_the_server_keeps_serving(server, case, expected):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(server.http)
    if case == "float32 image":
        array = face_like(64, 1)[None].astype(np.float32)
        tensor = httpclient.InferInput("image", list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs = [tensor]
    elif case == "four channels":
        array = np.zeros((1, 64, 64, 4), np.uint8)
        tensor = httpclient.InferInput("image", list(array.shape), "UINT8")
        tensor.set_data_from_numpy(array)
        inputs = [tensor]
    elif case == "over the size limit":
        inputs = _inputs(httpclient, face_like(257, 1))
    elif case == "steps 0":
        inputs = _inputs(httpclient, face_like(64, 1), steps=0)
    else:
        inputs = _inputs(httpclient, face_like(64, 1), sampler="fast")
    with pytest.raises(InferenceServerException) as info:
        client.infer("restore", inputs)
    message = str(info.value)
    print(f"{case}: {message.splitlines()[0][:300]}")
    assert expected in message
    # a client error: 4xx, one line, no traceback or server path (issue 27)
    assert message.startswith(("[400]", "[413]")) and "\n" not in message and "Traceback" not in message
    assert server.proc.poll() is None
    ok = client.infer("restore", _inputs(httpclient, face_like(64, 2), 1)).as_numpy("restored")
    assert ok.shape == (1, 64, 64, 3)


def test_overload_is_rejected_before_the_accepted_requests_finish(server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    n = QUEUE + MAX_BATCH + 16  # more than the running batch and the full queue together
    client = grpcclient.InferenceServerClient(server.grpc)
    rejected, served = [], []
    lock, finished = threading.Lock(), threading.Event()
    start = time.monotonic()

    def record(result, error):
        with lock:
            if error is None:
                served.append((time.monotonic() - start, None))
            else:
                rejected.append((time.monotonic() - start, str(error)))
            if len(served) + len(rejected) == n:
                finished.set()

    for i in range(n):
        client.async_infer("restore", _inputs(grpcclient, face_like(64, i), i), callback=record)
    assert finished.wait(600), f"{len(served) + len(rejected)} of {n} requests answered"
    client.close()
    print(
        f"{n} concurrent: {len(served)} served (last after {max(t for t, _ in served):.2f} s), "
        f"{len(rejected)} rejected (last after {max((t for t, _ in rejected), default=0):.2f} s): "
        f"{rejected[0][1] if rejected else ''}"
    )
    assert rejected, "no request was rejected beyond the queue limit"
    assert all("queue" in message.lower() for _, message in rejected), rejected[0][1]
    # explicit and fast: every rejection came back before the last accepted request was served
    assert max(t for t, _ in rejected) < max(t for t, _ in served)
    assert len(served) >= QUEUE
    ok = httpclient.InferenceServerClient(server.http).infer("restore", _inputs(httpclient, face_like(64, 3), 1))
    assert ok.as_numpy("restored").shape == (1, 64, 64, 3)


def _process_tree(root: int) -> list[int]:
    from flipnet_rt.serve.watchdog import descendants

    return [root, *descendants(root)]


def _listening(pids: list[int]) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) of the TCP sockets these processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.append(fields[1])
    return addresses


def test_nothing_listens_outside_loopback(server):
    addresses = _listening(_process_tree(server.proc.pid))
    print(f"listening: {addresses}")
    # 127.0.0.1; ::1; ::ffff:127.0.0.1 (gRPC binds an IPv6 socket to the IPv4-mapped loopback)
    loopback = ("0100007F:", "00000000000000000000000001000000:", "0000000000000000FFFF00000100007F:")
    ports = {int(a.split(":")[1], 16) for a in addresses}
    assert set(server.ports.values()) <= ports, f"HTTP, gRPC and metrics ports {server.ports} not all listening"
    assert all(a.startswith(loopback) for a in addresses), f"listening outside loopback: {addresses}"


def test_sigterm_stops_the_server_within_30_s(server):
    """Last test of the module: it stops the shared server."""
    tree = _process_tree(server.proc.pid)
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 30 s after SIGTERM:\n{server.log_tail()}")
    assert code == 0, server.log_tail()
    assert "server stopped" in server.log.read_text()
    time.sleep(1)  # let the children's exit be reaped by init
    alive = [
        pid
        for pid in tree[1:]
        if Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    ]
    assert not alive, f"processes left running after shutdown: {alive}"
    leftover = list(Path("/dev/shm").glob(f"pytrtion{server.proc.pid}-*"))  # PyTriton's spelling
    assert not leftover, f"shared memory left after shutdown: {leftover}"
