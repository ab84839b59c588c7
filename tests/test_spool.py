"""The disk spool: ordered, durable across restarts, bounded, corruption set aside and counted.

Plain tests for each promise, then a Hypothesis state machine that runs random sequences of
append / peek / ack / crash-and-reopen / corrupt-a-file against a plain list model.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kansoku.export import Spool

BIG = 1 << 30


@pytest.fixture
def open_spool(tmp_path: Path):
    """``open_spool(directory=tmp_path/'spool', max_bytes=BIG)``; every spool is closed afterwards."""
    opened: list[Spool] = []

    def open_(directory: Path | None = None, max_bytes: int = BIG) -> Spool:
        spool = Spool(directory or tmp_path / "spool", max_bytes)
        opened.append(spool)
        return spool

    yield open_
    for spool in opened:
        spool.close()


def drain(spool: Spool) -> list[bytes]:
    """Read and acknowledge everything, oldest first (bounded: a broken ``ack`` fails, not hangs)."""
    out: list[bytes] = []
    for _ in range(len(spool) + 1):
        head = spool.peek()
        if head is None:
            return out
        seq, payload = head
        out.append(payload)
        spool.ack(seq)
    raise AssertionError(f"spool did not drain; read {len(out)} batches, acknowledged ones came back")


def spool_files(spool: Spool, suffix: str = ".kspool") -> list[Path]:
    return sorted(spool.path.glob("*" + suffix))


def batch_cost() -> int:
    """Bytes one empty batch takes in a spool (header), measured rather than assumed."""
    with tempfile.TemporaryDirectory() as d:
        probe = Spool(d, BIG)
        try:
            assert probe.append(b"")
            return probe.bytes_used
        finally:
            probe.close()


HEADER = batch_cost()


# -- order and durability ------------------------------------------------------------------------


def test_append_peek_ack_in_order(open_spool):
    spool = open_spool()
    payloads = [f"batch-{i}".encode() for i in range(5)]
    for p in payloads:
        assert spool.append(p) is True
    assert len(spool) == 5

    head = spool.peek()
    assert head is not None
    assert head[1] == payloads[0]
    assert spool.peek() == head, "peek must not consume"

    spool.ack(head[0])
    assert spool.peek()[1] == payloads[1]
    assert drain(spool) == payloads[1:]
    assert spool.peek() is None
    assert len(spool) == 0
    assert spool.bytes_used == 0
    assert spool_files(spool) == [], "acknowledged batches must leave no file behind"


def test_reopen_replays_unacknowledged_in_order(open_spool, tmp_path):
    first = open_spool()
    payloads = [f"batch-{i}".encode() * (i + 1) for i in range(6)]
    for p in payloads:
        assert first.append(p)
    seq, _ = first.peek()
    first.ack(seq)
    first.close()  # what a dead process leaves: files on disk, lock released

    second = open_spool()
    assert second.path == first.path
    assert len(second) == 5
    assert second.bytes_used == sum(HEADER + len(p) for p in payloads[1:])
    # New appends go after the replayed ones, never before or over them.
    assert second.append(b"after-restart")
    assert drain(second) == [*payloads[1:], b"after-restart"]


def test_torn_tmp_files_are_ignored_and_removed(open_spool):
    first = open_spool()
    for p in (b"a", b"b"):
        assert first.append(p)
    # A crash between write and rename leaves a .tmp: never acknowledged to anyone, so discarded.
    torn_middle = first.path / f"{1:020d}.tmp"
    torn_next = first.path / f"{2:020d}.tmp"
    torn_next.write_bytes(b"KSP1\x00\x00")
    first.close()
    torn_middle.write_bytes(b"partial write")

    second = open_spool()
    assert len(second) == 2
    assert drain(second) == [b"a", b"b"]
    assert second.corrupt == 0
    assert spool_files(second, ".tmp") == []


def _flip_payload_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_magic(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_tail(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3])


def _truncate_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _extend(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"garbage")


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "flip-payload-byte": _flip_payload_byte,
    "flip-magic": _flip_magic,
    "truncate-tail": _truncate_tail,
    "truncate-header": _truncate_header,
    "empty-file": _empty,
    "trailing-garbage": _extend,
}


@pytest.mark.parametrize("damage", [pytest.param(fn, id=name) for name, fn in CORRUPTIONS.items()])
@pytest.mark.parametrize("reopen", [pytest.param(False, id="live"), pytest.param(True, id="after-restart")])
def test_corrupt_file_is_set_aside_counted_and_later_files_read(open_spool, damage, reopen):
    spool = open_spool()
    payloads = [f"batch-{i}-".encode() * 8 for i in range(5)]
    for p in payloads:
        assert spool.append(p)
    damage(spool_files(spool)[2])
    if reopen:
        spool.close()
        spool = open_spool()

    assert drain(spool) == [payloads[0], payloads[1], payloads[3], payloads[4]]
    assert spool.corrupt == 1
    assert len(spool) == 0
    assert spool_files(spool) == []
    assert len(spool_files(spool, ".corrupt")) == 1, "the damaged file is kept aside for inspection"


def test_corrupt_head_does_not_block_the_rest(open_spool):
    spool = open_spool()
    for p in (b"first", b"second", b"third"):
        assert spool.append(p)
    files = spool_files(spool)
    _flip_payload_byte(files[0])
    _truncate_tail(files[1])
    head = spool.peek()
    assert head is not None
    assert head[1] == b"third"
    assert spool.corrupt == 2


# -- bounds -------------------------------------------------------------------------------------------


def test_full_spool_refuses_without_writing(open_spool):
    payload = b"x" * 100
    spool = open_spool(max_bytes=2 * (HEADER + len(payload)))
    assert spool.append(payload)
    assert spool.append(payload)
    before_files = spool_files(spool)
    before_bytes = spool.bytes_used

    assert spool.append(payload) is False
    assert spool.append(b"y") is False
    assert spool_files(spool) == before_files
    assert list(spool.path.glob("*.tmp")) == []
    assert spool.bytes_used == before_bytes
    assert len(spool) == 2

    seq, _ = spool.peek()
    spool.ack(seq)
    assert spool.append(b"z" * 100), "acknowledging frees room"
    assert drain(spool) == [payload, b"z" * 100]


def test_concurrent_appends_never_exceed_max_bytes(open_spool, tmp_path):
    payload = b"x" * 100
    limit = 10 * (HEADER + len(payload))
    for trial in range(20):  # the race is wide (an fsync per append); one trial nearly always shows it
        spool = open_spool(tmp_path / f"trial-{trial}", max_bytes=limit)
        start = threading.Barrier(8)

        def writer(spool: Spool = spool, start: threading.Barrier = start) -> None:
            start.wait()
            for _ in range(10):
                spool.append(payload)

        threads = [threading.Thread(target=writer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert spool.bytes_used <= limit, f"trial {trial}: {len(spool)} batches, {spool.bytes_used} > {limit}"


def test_size_limit_counts_batches_found_at_startup(open_spool):
    payload = b"x" * 100
    limit = 2 * (HEADER + len(payload))
    first = open_spool(max_bytes=limit)
    assert first.append(payload)
    assert first.append(payload)
    first.close()
    second = open_spool(max_bytes=limit)
    assert second.bytes_used == limit
    assert second.append(payload) is False


# -- slots: several processes on one directory -------------------------------------------------------


def test_two_spools_on_one_directory_take_different_slots(open_spool):
    a = open_spool()
    b = open_spool()
    assert a.path != b.path
    assert a.append(b"from-a")
    assert b.append(b"from-b")
    # Neither replays the other's batches.
    assert drain(b) == [b"from-b"]
    assert a.peek()[1] == b"from-a"


def test_freed_slot_is_taken_by_the_next_spool_and_replayed(open_spool):
    a = open_spool()
    b = open_spool()
    assert a.append(b"left-by-a-1")
    assert a.append(b"left-by-a-2")
    a.close()  # process a dies

    c = open_spool()
    assert c.path == a.path
    assert c.path != b.path
    assert drain(c) == [b"left-by-a-1", b"left-by-a-2"]
    assert b.peek() is None


def test_single_survivor_replays_every_dead_slot(open_spool):
    a = open_spool()
    b = open_spool()
    assert a.append(b"left-by-a")
    assert b.append(b"left-by-b")
    a.close()
    b.close()

    survivor = open_spool()
    assert sorted(drain(survivor)) == [b"left-by-a", b"left-by-b"]


# -- model-based: random operation sequences against a list ----------------------------------------


@dataclass
class Entry:
    payload: bytes
    accounted: int  # bytes the live spool counts for it
    on_disk: int  # its file size now (differs after truncation)
    corrupt: bool = False


class SpoolMachine(RuleBasedStateMachine):
    """The spool against a list: same head, nothing acknowledged comes back, nothing lost but
    the corrupted batches, and those are counted."""

    MAX_BYTES = 5 * (HEADER + 60)

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="kansoku-spool-model-"))
        self.spool = Spool(self.root, self.MAX_BYTES)
        self.model: list[Entry] = []
        self.acked: set[bytes] = set()
        self.counter = 0
        self.corrupted = 0  # corruptions the spool has passed over so far (model side)
        self.corrupt_before = 0  # corrupt counts of spool instances that "crashed"

    # model helpers
    def _model_head(self) -> Entry | None:
        while self.model and self.model[0].corrupt:
            self.model.pop(0)
            self.corrupted += 1
        return self.model[0] if self.model else None

    def _counted(self) -> int:
        return self.corrupt_before + self.spool.corrupt

    @rule(data=st.binary(max_size=48), pad=st.integers(min_value=0, max_value=120))
    def append(self, data: bytes, pad: int) -> None:
        payload = f"{self.counter}:".encode() + data + b"." * pad  # unique: a reappearance shows
        self.counter += 1
        size = HEADER + len(payload)
        fits = sum(e.accounted for e in self.model) + size <= self.MAX_BYTES
        files_before = spool_files(self.spool)
        accepted = self.spool.append(payload)
        assert accepted is fits
        if accepted:
            self.model.append(Entry(payload, size, size))
        else:
            assert spool_files(self.spool) == files_before, "a refused append must write nothing"

    @rule()
    def ack(self) -> None:
        head = self.spool.peek()
        expected = self._model_head()
        if expected is None:
            assert head is None
            return
        assert head is not None
        assert head[1] == expected.payload
        self.spool.ack(head[0])
        self.model.pop(0)
        self.acked.add(expected.payload)

    @rule(torn=st.booleans())
    def crash_and_reopen(self, torn: bool) -> None:
        if torn:  # died in the middle of an append
            (self.spool.path / f"{10**12:020d}.tmp").write_bytes(b"KSP1 torn")
        self.corrupt_before += self.spool.corrupt
        self.spool.close()
        self.spool = Spool(self.root, self.MAX_BYTES)
        for e in self.model:
            e.accounted = e.on_disk  # a new spool sizes files as it finds them
        assert list(self.spool.path.glob("*.tmp")) == []

    @precondition(lambda self: any(not e.corrupt for e in self.model))
    @rule(pick=st.integers(min_value=0, max_value=1000), how=st.sampled_from(sorted(CORRUPTIONS)))
    def corrupt_a_file(self, pick: int, how: str) -> None:
        files = spool_files(self.spool)
        assert len(files) == len(self.model)
        candidates = [i for i, e in enumerate(self.model) if not e.corrupt]
        index = candidates[pick % len(candidates)]
        path = files[index]
        CORRUPTIONS[how](path)
        entry = self.model[index]
        entry.corrupt = True
        entry.on_disk = path.stat().st_size

    @invariant()
    def peek_equals_model_head(self) -> None:
        head = self.spool.peek()
        expected = self._model_head()
        if expected is None:
            assert head is None
        else:
            assert head is not None
            assert head[1] == expected.payload
            assert head[1] not in self.acked

    @invariant()
    def corruption_is_counted_and_nothing_else_is_lost(self) -> None:
        assert self._counted() == self.corrupted
        assert len(self.spool) == len(self.model)

    def teardown(self) -> None:
        try:
            remaining = drain(self.spool)
            assert not set(remaining) & self.acked, "acknowledged batches reappeared"
            assert remaining == [e.payload for e in self.model if not e.corrupt]
            assert self._counted() == self.corrupted + sum(e.corrupt for e in self.model)
        finally:
            self.spool.close()
            shutil.rmtree(self.root, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_spool_matches_list_model = SpoolMachine.TestCase
