"""The processes behind ``flipnet-rt serve``: Triton's Python-backend stubs, watched, and the shared
memory PyTriton leaves in ``/dev/shm``, released (Linux ``/proc``; Triton runs on Linux only).

Each model instance runs in a ``triton_python_backend_stub`` process, a child of ``tritonserver``
(itself a child of the serving process). When one dies (e.g. a request that makes numpy abort in
the stub), Triton answers that model with "Stub process ... is not healthy" for good while its
readiness still says 200: :class:`StubWatchdog` sees the stub gone (or a zombie) within a poll
interval and reports the model down, and the server exits non-zero for its supervisor.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

STUB = "triton_python_backend_stub"
#: PyTriton's shared-memory files: ``/dev/shm/pytrtion<pid of the serving process>-*`` (its spelling).
SHM_PATTERN = "/dev/shm/pytrtion{pid}-*"
_INSTANCE = re.compile(r"_\d+_\d+$")  # restore_0_0 -> restore
_INSTANCE_NAME = re.compile(r"^[A-Za-z][\w-]*_\d+_\d+$")


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, ppid)`` of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[1], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stubs(pid: int) -> dict[int, str]:
    """The Python-backend stubs below ``pid``: stub pid -> model name (its instance name less ``_i_j``)."""
    out = {}
    for child in descendants(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if args and args[0].endswith(STUB):
            # its arguments: model.py, shm name, sizes, parent pid, backend dir, ..., instance name ("restore_0_0")
            names = [a for a in args[1:] if _INSTANCE_NAME.match(a)]
            out[child] = _INSTANCE.sub("", names[0]) if names else "?"
    return out


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


class StubWatchdog:
    """Polls the stubs found at start; calls ``on_dead(model, reason)`` once per stub that dies."""

    def __init__(
        self, stubs_by_pid: dict[int, str], on_dead: Callable[[str, str], None], interval_s: float = 0.5
    ) -> None:
        self.stubs = dict(stubs_by_pid)
        self.on_dead, self.interval_s = on_dead, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flipnet-stub-watchdog", daemon=True)

    def start(self) -> StubWatchdog:
        log.info(
            "watching %d Triton stub process(es): %s",
            len(self.stubs),
            ", ".join(f"{m} (pid {p})" for p, m in sorted(self.stubs.items())),
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for pid, model in list(self.stubs.items()):
                if not alive(pid):
                    del self.stubs[pid]
                    self.on_dead(model, f"its Triton Python-backend stub process (pid {pid}) died")


def release_shared_memory(pid: int | None = None) -> list[str]:
    """Remove PyTriton's ``/dev/shm`` files of the serving process ``pid`` (default: this one);
    returns the paths removed. Call after Triton has stopped."""
    removed = []
    for path in glob.glob(SHM_PATTERN.format(pid=os.getpid() if pid is None else pid)):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed
