"""Hostile clients against `flipnet-rt serve` (issue 27): the quick cases of tests/serve_fuzz.py
(`make fuzz` runs them all, with 192 MB uploads), each refused with a 4xx and one clean line,
never failing a valid neighbour, never keeping memory; idle connections closed; a model whose stub
dies stops the server with exit status 3 and leaves nothing in /dev/shm."""

from __future__ import annotations

import os
import signal

import pytest

serve_fuzz = pytest.importorskip("serve_fuzz")
pytest.importorskip("pytriton")

IDLE_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def server(demo_engine, tmp_path_factory):
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    proc, ports = serve_fuzz.start(str(demo_engine), IDLE_TIMEOUT_S, log=log)
    yield proc, ports
    serve_fuzz.stop(proc)
    assert not serve_fuzz.shm_files(proc.pid), "shared memory left in /dev/shm after SIGTERM"


@pytest.mark.parametrize("case", serve_fuzz.CASES, ids=lambda c: c.name)
def test_each_request_is_answered_or_refused_in_one_line(server, case):
    proc, ports = server
    reply = case.send(ports["http"])
    print(f"{case.name}: {reply.status} {reply.error[:200]}")
    assert serve_fuzz.check(case, reply) is None, serve_fuzz.check(case, reply)
    assert proc.poll() is None


def test_a_refused_request_never_fails_its_batch_neighbours(server):
    assert serve_fuzz.neighbours(server[1]["http"]) is None


def test_refused_uploads_keep_no_memory(server):
    """Declared 8000x8000 (192 MB) with the body streamed: refused on the header; 3 of them."""
    proc, ports = server
    problem, line = serve_fuzz.refused_uploads(ports["http"], proc.pid, n=3, streamed_mb=32)
    print(line)
    assert problem is None, problem


def test_stalled_connections_are_closed_by_the_idle_timeout(server):
    assert serve_fuzz.stalled(server[1]["http"], IDLE_TIMEOUT_S, n=4) is None


def test_a_dead_stub_stops_the_server_with_exit_3_and_no_shared_memory_left(demo_engine, tmp_path):
    """gRPC is not behind the gateway: a request that kills Triton's stub for `restore` there must
    not leave a server that answers 500 for good while it says ready."""
    log = tmp_path / "server.log"
    proc, ports = serve_fuzz.start(str(demo_engine), IDLE_TIMEOUT_S, log=log)
    try:
        error = serve_fuzz.kill_stub_over_grpc(ports["grpc"])
        status = proc.wait(60)
        tail = log.read_text(errors="replace").splitlines()[-3:]
        print(f"client: {error}; exit {status}; log: {tail}")
        assert status == 3
        assert any("a model went down (restore:" in line for line in tail)
        assert not serve_fuzz.shm_files(proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
