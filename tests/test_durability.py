"""Export never blocks the application and never loses data silently.

Destination down for a while (disk spool, in-order replay), a deliberately tiny spool (every
loss counted), ``kill -9`` after ``flush()`` (spooled data survives the process), a corrupted
spool file at restart, and a bounded queue in front of an exporter that hangs.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import kansoku
from helpers.collector import Collector
from helpers.sdk import Start, channel, free_port, started_sdk, wait_until
from kansoku.export import ExportResult
from kansoku.model import Span
from kansoku.testing import InMemoryExporter

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Start]:
    """``start(*exporters, **settings)``: kansoku with a spool under ``tmp_path``; always shut down."""
    with started_sdk(monkeypatch, tmp_path, service_name="durability") as start:
        yield start


def record(count: int, prefix: str) -> tuple[list[str], list[int]]:
    """Make ``count`` spans on this thread; their ids and the caller's time for each (ns)."""
    ids: list[str] = []
    took: list[int] = []
    for i in range(count):
        t0 = time.perf_counter_ns()
        with kansoku.span(f"{prefix}-{i}") as span:
            pass
        took.append(time.perf_counter_ns() - t0)
        ids.append(span.span_id)
    return ids, took


def ids_of(spans: Sequence[Span]) -> list[str]:
    return [s.span_id for s in spans]


# -- destination down for a while -------------------------------------------------------------------


def test_destination_down_callers_do_not_wait_and_everything_arrives_once_in_order(sdk):
    n = 1500
    memory = InMemoryExporter(spool=True)
    sdk(memory, batch_size=50, flush_interval_ms=10)

    up_ids, up_took = record(n, "up")
    assert kansoku.flush()
    assert len(memory.spans) == n

    memory.fail = True  # the destination goes down
    down_ids, down_took = record(n, "down")
    assert kansoku.flush(), "flush returns once everything is durably spooled"

    # The caller never waited for the destination: per-span cost is about the same up or down.
    up_median, down_median = statistics.median(up_took), statistics.median(down_took)
    assert down_median <= 5 * up_median, (up_median, down_median)

    # Nothing arrived while down, and stats say where the spans are.
    assert len(memory.spans) == n
    counters = channel("memory")
    assert counters["spooled"] == n
    assert counters["spool_batches"] >= 1
    assert counters["spool_bytes"] > 0
    assert counters["failures"] >= 1
    assert counters["exported"] == n
    assert counters["dropped"] == 0

    memory.fail = False  # the destination comes back
    # Backoff is full jitter from a 0.5 s base, so the first successful retry comes within seconds.
    assert wait_until(lambda: channel("memory")["spool_batches"] == 0, timeout=20), channel("memory")
    assert kansoku.flush()

    delivered = ids_of(memory.spans)
    assert len(delivered) == len(set(delivered)), "a span arrived twice"
    assert delivered == up_ids + down_ids, "every span arrives exactly once, in order"
    counters = channel("memory")
    assert counters["replayed"] == n
    assert counters["exported"] == 2 * n
    assert counters["spool_bytes"] == 0
    assert counters["dropped"] == 0


def test_spans_made_during_replay_stay_behind_the_backlog(sdk):
    memory = InMemoryExporter(spool=True)
    sdk(memory, batch_size=20, flush_interval_ms=10)
    memory.fail = True
    before, _ = record(200, "before")
    assert kansoku.flush()
    memory.fail = False
    during, _ = record(200, "during")  # while the backlog may still be waiting for its retry
    assert kansoku.flush()
    assert wait_until(lambda: len(memory.spans) == 400, timeout=20), channel("memory")
    assert ids_of(memory.spans) == before + during


def test_without_a_spool_a_down_destination_drops_and_counts(sdk):
    memory = InMemoryExporter()  # no spool: like stdout or a file
    memory.fail = True
    sdk(memory, batch_size=10)
    record(35, "lost")
    assert kansoku.flush()
    counters = channel("memory")
    assert memory.spans == []
    assert counters["exported"] == 0
    assert counters["dropped"] == 35
    assert counters["spooled"] == 0


# -- a deliberately tiny spool ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spool_max_bytes", "some_arrive"),
    [
        pytest.param(16_000, True, id="room-for-a-few-batches"),
        pytest.param(200, False, id="smaller-than-one-batch"),
    ],
)
def test_tiny_spool_every_loss_is_counted_exactly(sdk, spool_max_bytes, some_arrive):
    n = 300
    memory = InMemoryExporter(spool=True)
    memory.fail = True
    sdk(memory, spool_max_bytes=spool_max_bytes, batch_size=10, flush_interval_ms=10)
    made, _ = record(n, "tiny")
    assert kansoku.flush()
    counters = channel("memory")
    assert counters["dropped"] > 0
    assert counters["spooled"] + counters["dropped"] == n
    assert counters["spool_bytes"] <= spool_max_bytes

    memory.fail = False
    assert wait_until(lambda: channel("memory")["spool_batches"] == 0, timeout=20), channel("memory")
    assert kansoku.flush()
    counters = channel("memory")
    received = ids_of(memory.spans)
    assert len(received) + counters["dropped"] == n
    assert counters["dropped"] == counters["dropped_spool_full"] + counters["dropped_queue_full"]
    assert counters["dropped"] > 0
    assert (len(received) > 0) is some_arrive
    assert len(set(received)) == len(received)
    # What arrived is a subsequence of what was made, in order.
    positions = [made.index(i) for i in received]
    assert positions == sorted(positions)


# -- kill -9 after flush() --------------------------------------------------------------------------


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """The child's stdout lines up to ``marker``, read on a helper thread so the wait is bounded."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break  # the child exited
        seen.append(line)
        if line == marker:
            return seen
    raise AssertionError(f"child did not print {marker!r} within {timeout} s; got {seen!r}")


@pytest.mark.slow
def test_kill_9_after_flush_loses_nothing(sdk, tmp_path):
    n = 120
    port = free_port()  # nothing listens here during phase 1: the collector is down
    url = f"http://127.0.0.1:{port}"
    spool_dir = tmp_path / "spool"
    service = "kill-nine"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KANSOKU_")}
    stderr_path = tmp_path / "child.stderr"

    with (
        open(stderr_path, "w") as stderr,
        subprocess.Popen(  # noqa: S603 - our own helper, run with this interpreter
            [sys.executable, str(HELPERS / "spool_child.py"), str(spool_dir), url, str(n), service],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        ) as child,
    ):
        try:
            lines = _read_until(child, "FLUSHED", timeout=30)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    report = json.loads(lines[-2])
    made: list[str] = report["ids"]
    assert len(made) == n
    assert report["flushed"] is True, stderr_path.read_text()
    name = f"http:127.0.0.1:{port}"  # the exporter's name, which also picks the spool sub-directory
    child_counters = report["stats"]["exporters"][name]
    assert child_counters["spooled"] == n
    assert child_counters["exported"] == 0
    assert child_counters["dropped"] == 0
    assert list(spool_dir.rglob("*.kspool")), "the spool files are on disk after the kill"

    # Phase 2: the collector is back on the same address; a new process with the same settings.
    with Collector(port=port) as collector:
        sdk(url, service_name=service, spool_dir=str(spool_dir))
        assert wait_until(lambda: len(collector.snapshot()[1]) >= n, timeout=20), channel(name)
        assert kansoku.flush()
        _, arrived = collector.snapshot()
        assert collector.errors == []
    assert sorted(arrived) == sorted(made)
    assert len(arrived) == n, "no duplicates"
    assert arrived == made, "replayed in the order they were made"
    counters = channel(name)
    assert counters["replayed"] == n
    assert counters["spool_batches"] == 0


# -- a corrupted spool file at restart ------------------------------------------------------------------


def test_corrupt_spool_file_at_restart_is_counted_and_the_rest_arrive(sdk, tmp_path):
    batches = 5
    memory = InMemoryExporter(spool=True)
    memory.fail = True
    sdk(memory, batch_size=10, flush_interval_ms=60_000)
    made: list[list[str]] = []
    for b in range(batches):
        ids, _ = record(10, f"batch{b}")
        made.append(ids)
        assert kansoku.flush()  # one batch of 10 per flush
    assert channel("memory")["spool_batches"] == batches
    kansoku.shutdown()

    files = sorted((tmp_path / "spool").rglob("*.kspool"))
    assert len(files) == batches
    data = bytearray(files[2].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[2].write_bytes(bytes(data))

    restarted = InMemoryExporter(spool=True)  # same name and service: same spool directory
    sdk(restarted, batch_size=10)
    assert wait_until(lambda: channel("memory")["spool_batches"] == 0, timeout=20), channel("memory")
    assert ids_of(restarted.spans) == made[0] + made[1] + made[3] + made[4]
    counters = channel("memory")
    assert counters["spool_corrupt"] == 10  # the records of the corrupted file, not files
    assert counters["replayed"] == 40


# -- the bounded queue in front of a hung exporter ---------------------------------------------------------


class HungExporter(InMemoryExporter):
    """Blocks inside ``export`` until ``release`` is set (bounded, so a broken test cannot hang)."""

    def __init__(self, *, spool: bool = False) -> None:
        super().__init__("hung", spool=spool)
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, batch: Sequence[Span]) -> ExportResult:
        self.entered.set()
        self.release.wait(30)
        return super().export(batch)


def test_bounded_queue_never_blocks_and_accounts_for_every_span(sdk):
    hung = HungExporter()
    sdk(hung, queue_size=20, batch_size=5, flush_interval_ms=5)
    first, _ = record(5, "first")
    assert hung.entered.wait(10), "the exporter should be stuck in export by now"

    submitted = 5_000
    done = threading.Event()

    def produce() -> None:
        record(submitted - len(first), "flood")
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(20)
    assert done.is_set(), "the application thread was blocked by a hung exporter"
    assert not hung.release.is_set()

    hung.release.set()
    assert kansoku.flush(timeout=20)
    stats = kansoku.stats()
    queue_full = stats["dropped"].get("queue_full", 0)
    counters = stats["exporters"]["hung"]
    delivered = len(hung.spans)
    # Two places can refuse a span: the pipeline's queue (stats()["dropped"]["queue_full"]) and the
    # exporter's channel queue (stats()["exporters"][name]["dropped"]); together they explain all.
    assert queue_full + counters["dropped"] > 0
    assert delivered + queue_full + counters["dropped"] == submitted
    assert stats["received"] + queue_full == submitted
    assert stats["processed"] == delivered + counters["dropped"]
    assert stats["queued"] == 0
    assert counters["queued"] == 0


def test_slow_destination_with_a_full_queue_still_delivers_in_order(sdk):
    gate = HungExporter(spool=True)
    sdk(gate, queue_size=40, batch_size=10, flush_interval_ms=5)
    made, _ = record(10, "first")
    assert gate.entered.wait(10)
    for chunk in range(9):  # 10 at a time so the pipeline's own queue never overflows
        ids, _ = record(10, f"chunk{chunk}")
        made += ids
        assert wait_until(lambda: kansoku.stats()["queued"] == 0)
    gate.release.set()
    assert kansoku.flush(timeout=20)
    assert wait_until(lambda: len(gate.spans) == len(made), timeout=20), channel("hung")
    assert kansoku.stats()["dropped"] == {}
    assert channel("hung")["dropped"] == 0
    assert channel("hung")["spooled"] > 0
    assert ids_of(gate.spans) == made


def test_shutdown_with_a_hung_exporter_keeps_queued_spans_for_the_next_start(sdk, tmp_path):
    hung = HungExporter(spool=True)
    sdk(hung, batch_size=10, flush_interval_ms=5)
    record(10, "in-flight")
    assert hung.entered.wait(10)
    queued, _ = record(40, "queued")
    assert wait_until(lambda: kansoku.stats()["queued"] == 0)
    try:
        kansoku.shutdown(timeout=0.2)
        assert list((tmp_path / "spool").rglob("*.kspool")), "queued spans should be on disk after shutdown"
        restarted = InMemoryExporter("hung", spool=True)
        sdk(restarted)
        assert wait_until(lambda: set(queued) <= set(ids_of(restarted.spans)), timeout=10)
    finally:
        hung.release.set()
