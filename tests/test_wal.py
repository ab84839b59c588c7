"""The collector's write-ahead log: order, checkpoints, group commit, damage, back-pressure, kill -9.

Reliability tests 1, 2 and 5 at the level of the log itself: every acknowledged batch survives a
``SIGKILL``; a torn tail or a damaged middle entry never stops a restart, loses nothing else and is
counted; a Hypothesis state machine checks the log against a plain list.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kansoku.server import _wal_format as fmt
from kansoku.server._wal import WALError, WALFullError, WriteAheadLog
from kansoku.testing import FakeClock

HDR = fmt.HEADER.size


def payload_of(tag: str) -> bytes:
    """A deterministic payload of 1..200 repetitions of ``tag`` (the kill -9 child makes the same)."""
    return (tag + "|").encode() * (1 + zlib.crc32(tag.encode()) % 200)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


def fill(wal: WriteAheadLog, n: int, prefix: str = "p") -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for i in range(n):
        data = payload_of(f"{prefix}{i}")
        out.append((wal.append(data), data))
    return out


def crash(wal: WriteAheadLog) -> None:
    """Leave the log the way a kill -9 would: handles dropped, no final checkpoint."""
    wal._release()


# -- order, segments, checkpoints -----------------------------------------------------------------


def test_append_and_replay_keep_order_across_segment_rolls(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=4096)
    written = fill(wal, 150)
    written += list(zip(wal.append_many([b"a", b"bb", b""]), [b"a", b"bb", b""], strict=True))
    assert [s for s, _ in written] == list(range(1, 154))
    stats = wal.stats()
    assert stats.segments == len(segments(tmp_path)) > 5
    assert (stats.appended, stats.last_seq, stats.checkpoint) == (153, 153, 0)
    assert stats.unapplied_bytes == sum(HDR + len(p) for _, p in written)
    assert list(wal.replay()) == written
    wal.close()

    for path in segments(tmp_path):  # each segment is named after its first entry
        first = next(fmt.scan(path.read_bytes()))
        assert isinstance(first, fmt.Frame)
        assert fmt.segment_name(first.seq) == path.name

    with WriteAheadLog(tmp_path, segment_bytes=4096) as again:
        assert list(again.replay()) == written
        assert again.stats().unapplied_bytes == stats.unapplied_bytes
        assert again.append(b"next") == 154
        assert list(again.replay(after=152)) == [*written[-1:], (154, b"next")]


def test_checkpoint_deletes_covered_segments_and_replay_starts_after_it(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=4096)
    written = fill(wal, 120)
    before = segments(tmp_path)
    wal.mark_applied(80)
    assert wal.checkpoint() == 80
    after = segments(tmp_path)
    assert 0 < len(after) < len(before)
    assert wal.stats().segments == len(after)
    firsts = [fmt.segment_seq(p.name) or 0 for p in before]
    for i, path in enumerate(before):  # deleted exactly when the next segment starts at or before 81
        assert (path in after) == (i + 1 == len(before) or firsts[i + 1] > 81)
    assert [s for s, _ in wal.replay()] == list(range(81, 121))
    assert wal.stats().unapplied_bytes == sum(HDR + len(p) for s, p in written if s > 80)
    wal.mark_applied(50)  # going backwards is ignored
    assert wal.stats().applied == 80
    with pytest.raises(ValueError, match="durable"):
        wal.mark_applied(121)
    crash(wal)

    with WriteAheadLog(tmp_path, segment_bytes=4096) as again:
        assert again.stats().checkpoint == 80
        assert list(again.replay()) == written[80:]
        again.mark_applied(120)
        again.checkpoint()
        assert list(again.replay()) == []
    with WriteAheadLog(tmp_path) as empty:  # sequence numbers never go back, even with nothing kept
        assert empty.stats().last_seq == 120
        assert empty.append(b"x") == 121


def test_mark_applied_persists_at_most_once_per_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    wal = WriteAheadLog(tmp_path, checkpoint_interval_ms=200, clock=clock)
    fill(wal, 10)
    for seq in range(1, 6):
        wal.mark_applied(seq)
    assert wal.stats().checkpoint == 0
    assert not (tmp_path / fmt.CHECKPOINT).exists()
    clock.advance(0.2)
    wal.mark_applied(6)
    assert wal.stats().checkpoint == 6
    wal.mark_applied(7)
    assert wal.stats().checkpoint == 6
    crash(wal)
    with WriteAheadLog(tmp_path, clock=clock) as again:  # an unpersisted mark means a replay, not a loss
        assert [s for s, _ in again.replay()] == [7, 8, 9, 10]


def test_group_commit_shares_fsyncs_between_threads(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=256 * 1024)
    threads, per_thread = 8, 500
    acked: list[list[tuple[int, bytes]]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            data = f"t{t}-{i}".encode() * 8
            acked[t].append((wal.append(data), data))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stats = wal.stats()
    total = threads * per_thread
    assert stats.appended == total
    assert stats.fsyncs < total / 2, stats
    everything = sorted(e for per in acked for e in per)
    assert [s for s, _ in everything] == list(range(1, total + 1))
    for per in acked:  # each thread's own appends got increasing sequence numbers
        assert [s for s, _ in per] == sorted(s for s, _ in per)
    crash(wal)
    with WriteAheadLog(tmp_path) as again:
        assert list(again.replay()) == everything


# -- damage -------------------------------------------------------------------------------------


def _write_then_crash(directory: Path, n: int, segment_bytes: int = 1 << 20) -> list[tuple[int, bytes]]:
    wal = WriteAheadLog(directory, segment_bytes=segment_bytes)
    written = fill(wal, n)
    crash(wal)
    return written


@pytest.mark.parametrize("damage", ["cut-in-header", "cut-in-payload", "bad-crc", "garbage-after"])
def test_torn_tail_is_truncated_and_counted(tmp_path: Path, damage: str) -> None:
    written = _write_then_crash(tmp_path, 10)
    (seg,) = segments(tmp_path)
    data = seg.read_bytes()
    last_len = HDR + len(written[-1][1])
    start_of_last = len(data) - last_len
    if damage == "cut-in-header":
        seg.write_bytes(data[: start_of_last + 7])
        lost, survivors = 7, written[:-1]
    elif damage == "cut-in-payload":
        seg.write_bytes(data[: start_of_last + HDR + 3])
        lost, survivors = HDR + 3, written[:-1]
    elif damage == "bad-crc":
        seg.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
        lost, survivors = last_len, written[:-1]
    else:
        seg.write_bytes(data + b"\x00" * 100)  # preallocated or zero-filled space after a crash
        lost, survivors = 100, written

    with WriteAheadLog(tmp_path) as wal:
        stats = wal.stats()
        assert (stats.truncated_bytes, stats.corrupt_entries) == (lost, 0)
        assert list(wal.replay()) == survivors
        assert seg.stat().st_size == sum(HDR + len(p) for _, p in survivors)
        seq = wal.append(b"after")
        assert seq == survivors[-1][0] + 1
        assert list(wal.replay())[-1] == (seq, b"after")
    with WriteAheadLog(tmp_path) as wal:  # the repair was durable: nothing more to cut
        assert wal.stats().truncated_bytes == 0
        assert list(wal.replay()) == [*survivors, (seq, b"after")]


@pytest.mark.parametrize("damage", ["bad-crc", "bad-magic", "impossible-length", "zeroed-header", "bad-seq"])
def test_corrupted_middle_entry_is_skipped_and_later_entries_survive(tmp_path: Path, damage: str) -> None:
    written = _write_then_crash(tmp_path, 20)
    (seg,) = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    pos = sum(HDR + len(p) for _, p in written[:7])  # entry 8
    if damage == "bad-crc":
        data[pos + HDR + 5] ^= 0x01
    elif damage == "bad-magic":
        data[pos : pos + 4] = b"XXXX"
    elif damage == "impossible-length":
        data[pos + 8 : pos + 12] = (0xFFFFFFF0).to_bytes(4, "big")
    elif damage == "zeroed-header":
        data[pos : pos + HDR] = bytes(HDR)
    else:
        data[pos + 12 : pos + 20] = (9).to_bytes(8, "big")  # the CRC covers the sequence number too
    seg.write_bytes(bytes(data))

    with WriteAheadLog(tmp_path) as wal:
        stats = wal.stats()
        assert stats.corrupt_entries == 1
        assert stats.skipped_bytes == HDR + len(written[7][1])
        assert stats.truncated_bytes == 0
        assert list(wal.replay()) == written[:7] + written[8:]
        assert wal.append(b"more") == 21


def test_damage_in_an_older_segment_and_several_places_is_survived(tmp_path: Path) -> None:
    written = _write_then_crash(tmp_path, 60, segment_bytes=4096)
    segs = segments(tmp_path)
    assert len(segs) >= 4
    first = segs[0].read_bytes()
    segs[0].write_bytes(first[:-5])  # an older segment's end is damage, not a torn tail
    second = bytearray(segs[1].read_bytes())
    frames = [f for f in fmt.scan(bytes(second)) if isinstance(f, fmt.Frame)]
    assert len(frames) >= 2
    second[frames[0].payload_start] ^= 0xFF
    second[frames[-1].end - 1] ^= 0xFF  # the end of an older segment again
    segs[1].write_bytes(bytes(second))
    lost = {frames[0].seq - 1, frames[0].seq, frames[-1].seq}
    with WriteAheadLog(tmp_path, segment_bytes=4096) as wal:
        stats = wal.stats()
        assert stats.corrupt_entries == 3
        assert stats.truncated_bytes == 0
        assert list(wal.replay()) == [e for e in written if e[0] not in lost]
        assert len(segs[0].read_bytes()) == len(first) - 5  # older segments are left as they are


def test_damaged_checkpoint_replays_everything_kept(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    written = fill(wal, 10)
    wal.mark_applied(5)
    wal.close()
    (tmp_path / fmt.CHECKPOINT).write_bytes(b"junk")
    with WriteAheadLog(tmp_path) as again:
        assert again.stats().corrupt_entries == 1
        assert list(again.replay()) == written  # duplicates, never a loss


def test_frames_inside_payloads_are_not_mistaken_for_entries(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    nested = fmt.encode(2, b"inner") + fmt.encode(3, b"inner2")
    written = [(wal.append(nested), nested), (wal.append(b"x"), b"x")]
    crash(wal)
    with WriteAheadLog(tmp_path) as again:
        assert list(again.replay()) == written
        assert again.stats().corrupt_entries == 0


# -- bounds, errors ----------------------------------------------------------------------------


def test_full_log_raises_with_retry_after_until_entries_are_applied(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=10_000, retry_after_s=2.5)
    payload = b"x" * (1000 - HDR)
    seqs = [wal.append(payload) for _ in range(10)]
    with pytest.raises(WALFullError) as info:
        wal.append(b"one more")
    assert info.value.retry_after_s == 2.5
    assert info.value.unapplied_bytes == 10_000
    with pytest.raises(WALFullError):
        wal.append_many([b"a", b"b"])
    assert wal.stats().rejected == 2
    assert wal.stats().last_seq == 10  # nothing was written for a refused append
    wal.mark_applied(seqs[1])
    assert wal.append_many([payload, payload]) == [11, 12]
    wal.checkpoint()
    with pytest.raises(WALError, match="never fit") as never:
        wal.append(b"x" * 10_001)
    assert not isinstance(never.value, WALFullError)
    crash(wal)
    with WriteAheadLog(tmp_path, max_bytes=10_000) as again:  # the bound holds across a restart
        assert again.stats().unapplied_bytes == 10_000
        with pytest.raises(WALFullError):
            again.append(b"y")


def test_one_instance_per_directory_and_closed_log_refuses(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    with pytest.raises(WALError, match="in use"):
        WriteAheadLog(tmp_path)
    wal.append(b"a")
    wal.close()
    wal.close()
    with pytest.raises(WALError, match="closed"):
        wal.append(b"b")
    WriteAheadLog(tmp_path).close()


def test_failed_fsync_refuses_further_appends_and_reopen_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kansoku.server import _wal

    wal = WriteAheadLog(tmp_path)
    wal.append(b"kept")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_wal, "_sync", broken)
    with pytest.raises(WALError, match="write failed"):
        wal.append(b"lost")
    monkeypatch.undo()
    with pytest.raises(WALError, match="failed"):
        wal.append(b"refused")  # a failed fsync is never retried on the same file
    wal.close()
    with WriteAheadLog(tmp_path) as again:
        # the unacknowledged entry may or may not be there (at-least-once); the acknowledged one is
        assert next(again.replay()) == (1, b"kept")
        assert again.append(b"new") == again.stats().last_seq


# -- kill -9 -------------------------------------------------------------------------------------

CHILD = r"""
import sys, threading, zlib
from kansoku.server._wal import WriteAheadLog

def payload_of(tag):
    return (tag + "|").encode() * (1 + zlib.crc32(tag.encode()) % 200)

directory, run = sys.argv[1], sys.argv[2]
wal = WriteAheadLog(directory, segment_bytes=64 * 1024, checkpoint_interval_ms=0)
out = threading.Lock()
sys.stdout.write("ready\n")
sys.stdout.flush()

def work(t):
    i = 0
    while True:
        tag = f"{run}-{t}-{i}"
        seq = wal.append(payload_of(tag))
        with out:
            sys.stdout.write(f"{seq} {tag}\n")
            sys.stdout.flush()
        if i % 25 == 0 and seq > 100:
            wal.mark_applied(seq - 100)
        i += 1

for t in range(4):
    threading.Thread(target=work, args=(t,), daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    rng = random.Random(9)
    acked: dict[int, str] = {}
    budget = time.monotonic() + 12
    runs = 0
    while runs < 10 and time.monotonic() < budget:
        child = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
            [sys.executable, "-c", CHILD, str(tmp_path), str(runs)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
        for line in out.splitlines(keepends=True):
            if line.endswith("\n"):
                seq, tag = line.split()
                assert int(seq) not in acked, "a sequence number was acknowledged twice"
                acked[int(seq)] = tag
        runs += 1

        with WriteAheadLog(tmp_path, segment_bytes=64 * 1024) as wal:
            checkpoint = wal.stats().checkpoint
            replayed = dict(wal.replay())
            assert checkpoint <= max(acked, default=0)
            missing = [s for s in acked if s > checkpoint and replayed.get(s) != payload_of(acked[s])]
            assert not missing, f"run {runs}: {len(missing)} acknowledged entries lost, e.g. {missing[:5]}"
            assert list(replayed) == list(range(checkpoint + 1, wal.stats().last_seq + 1))  # no gaps
    assert runs >= 5
    assert len(acked) > 100, "the child should have acknowledged entries before most kills"


# -- model-based -------------------------------------------------------------------------------


class WALMachine(RuleBasedStateMachine):
    """The log against a list of acknowledged ``(seq, payload)`` and the applied mark."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="kansoku-wal-"))
        self.clock = FakeClock()
        self.wal = self.open()
        self.model: list[tuple[int, bytes]] = []
        self.next_seq = 1
        self.applied = 0
        self.persisted = 0

    def open(self) -> WriteAheadLog:
        return WriteAheadLog(self.dir, segment_bytes=300, checkpoint_interval_ms=1000, clock=self.clock)

    def check_replay(self) -> None:
        ckpt = self.wal.stats().checkpoint
        assert self.persisted <= ckpt <= self.applied
        self.applied = ckpt
        assert list(self.wal.replay()) == [e for e in self.model if e[0] > ckpt]

    @rule(payload=st.binary(max_size=120))
    def append(self, payload: bytes) -> None:
        assert self.wal.append(payload) == self.next_seq
        self.model.append((self.next_seq, payload))
        self.next_seq += 1

    @rule(payloads=st.lists(st.binary(max_size=40), max_size=4))
    def append_many(self, payloads: list[bytes]) -> None:
        seqs = self.wal.append_many(payloads)
        assert seqs == list(range(self.next_seq, self.next_seq + len(payloads)))
        self.model += zip(seqs, payloads, strict=True)
        self.next_seq += len(seqs)

    @precondition(lambda self: self.next_seq - 1 > self.applied)
    @rule(data=st.data(), persist=st.booleans(), tick=st.booleans())
    def mark_applied(self, data: st.DataObject, persist: bool, tick: bool) -> None:
        seq = data.draw(st.integers(self.applied + 1, self.next_seq - 1))
        if tick:
            self.clock.advance(1.0)  # lets mark_applied persist by itself
        self.wal.mark_applied(seq)
        self.applied = seq
        if tick:
            self.persisted = seq
        if persist:
            assert self.wal.checkpoint() == seq
            self.persisted = seq

    @rule()
    def crash_and_reopen(self) -> None:
        crash(self.wal)
        self.wal = self.open()
        self.check_replay()

    @rule()
    def close_and_reopen(self) -> None:
        self.wal.close()
        self.persisted = self.applied
        self.wal = self.open()
        self.check_replay()

    @precondition(lambda self: any(self.dir.glob("wal-*.log")))
    @rule(payload=st.binary(min_size=1, max_size=60), data=st.data())
    def tear_tail_and_reopen(self, payload: bytes, data: st.DataObject) -> None:
        """A crash in the middle of writing an entry that was never acknowledged."""
        crash(self.wal)
        frame = fmt.encode(self.next_seq, payload)
        cut = data.draw(st.integers(1, len(frame) - 1))
        last = segments(self.dir)[-1]
        with open(last, "ab") as fh:
            fh.write(frame[:cut])
        self.wal = self.open()
        assert self.wal.stats().truncated_bytes == cut
        self.check_replay()

    @invariant()
    def counters_match(self) -> None:
        stats = self.wal.stats()
        assert stats.last_seq == self.next_seq - 1
        assert stats.corrupt_entries == 0
        assert stats.unapplied_bytes == sum(HDR + len(p) for s, p in self.model if s > self.applied)

    def teardown(self) -> None:
        self.wal.close()
        shutil.rmtree(self.dir, ignore_errors=True)


WALMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None, database=None)
test_wal_matches_a_list_model = WALMachine.TestCase
