"""StageTimer: per-call records for bench, or constant-size totals for long streams."""

from __future__ import annotations

import threading

from flipnet_rt.runtime.profiling import StageTimer


def test_records_every_call_or_only_totals_from_several_threads():
    syncs = []
    kept, totals = StageTimer(sync=lambda: syncs.append(1)), StageTimer(keep=False)

    def work():
        for _ in range(200):
            for timer in (kept, totals):
                with timer.stage("decode"):
                    pass
                with timer.stage("encode"):
                    sum(range(100))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [len(kept.records[s]) for s in ("decode", "encode")] == [800, 800]
    assert len(syncs) == 2 * 1600  # the barrier before and after every stage
    assert [len(totals.records[s]) for s in ("decode", "encode")] == [1, 1]  # constant size
    assert set(totals.totals()) == {"decode", "encode"} and all(v > 0 for v in totals.totals().values())
    assert kept.totals()["encode"] == sum(kept.records["encode"])
