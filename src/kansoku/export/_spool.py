"""A durable, ordered, bounded disk spool of export batches.

One file per batch (``<seq>-<items>.kspool``), written to a temporary name, fsync'd, renamed and the
directory fsync'd: a batch is either wholly present or absent after a crash. Each file carries
a magic, a CRC32 and the payload length, so a torn or corrupted file is detected, counted and
set aside instead of crashing a restart. Acknowledging a batch deletes its file.

Several processes may point at the same spool directory (e.g. web-server workers). Each takes
an exclusive ``flock`` on one *slot* sub-directory, so no two processes replay the same files;
a process also adopts the files of every other slot no live process holds, so batches left by
dead processes are replayed even when fewer processes run than before.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from pathlib import Path

from kansoku._fsutil import fsync_dir, lock_dir, unlock
from kansoku.errors import SpoolCorruptError

log = logging.getLogger("kansoku.spool")

_MAGIC = b"KSP1"
_HEADER = struct.Struct(">4sIQ")  # magic, crc32(payload), len(payload)
_SUFFIX = ".kspool"
_MAX_SLOTS = 64


class Spool:
    """Append batches as opaque bytes; read the oldest; acknowledge it. Thread-safe."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.corrupt = 0
        self.corrupt_items = 0
        self._lock = threading.Lock()
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        self.path, self._lock_fd = _take_slot(root)
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # a write that never reached its rename: never acknowledged
        self._names: dict[int, Path] = {}
        for p in self.path.glob("*" + _SUFFIX):
            seq = _seq_of(p)
            if seq is not None:
                self._names[seq] = p
        self._seqs = sorted(self._names)
        self._sizes = {s: self._names[s].stat().st_size for s in self._seqs}
        self._reserved = 0
        self._next = (self._seqs[-1] + 1) if self._seqs else 0
        self._adopt_orphans(root)

    def _adopt_orphans(self, root: Path) -> None:
        """Move the files of slots no live process holds behind our own, in their order."""
        for other in sorted(root.glob("slot-*")):
            if other == self.path or not other.is_dir():
                continue
            fd = lock_dir(other)
            if fd is None:
                continue  # a live process owns it
            try:
                for tmp in other.glob("*.tmp"):
                    tmp.unlink(missing_ok=True)
                found = sorted((s, p) for p in other.glob("*" + _SUFFIX) if (s := _seq_of(p)) is not None)
                for _, path in found:
                    seq = self._next
                    self._next += 1
                    target = self.path / f"{seq:020d}{path.name[20:]}"
                    path.replace(target)
                    self._names[seq] = target
                    self._seqs.append(seq)
                    self._sizes[seq] = target.stat().st_size
                if found:
                    fsync_dir(self.path)
                    fsync_dir(other)
            finally:
                unlock(fd)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seqs)

    @property
    def bytes_used(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def append(self, payload: bytes, items: int = 1) -> bool:
        """Durably store ``payload`` (holding ``items`` records); ``False`` when the spool is full."""
        size = _HEADER.size + len(payload)
        with self._lock:
            # Reserve the space before writing, so concurrent appenders cannot overshoot.
            if sum(self._sizes.values()) + self._reserved + size > self.max_bytes:
                return False
            self._reserved += size
            seq = self._next
            self._next += 1
        final = self.path / f"{seq:020d}-{items}{_SUFFIX}"
        tmp = final.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(_HEADER.pack(_MAGIC, zlib.crc32(payload), len(payload)))
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(final)
            fsync_dir(self.path)
        except OSError:
            log.warning("kansoku spool write failed in %s", self.path, exc_info=True)
            tmp.unlink(missing_ok=True)
            with self._lock:
                self._reserved -= size
            return False
        with self._lock:
            self._reserved -= size
            self._names[seq] = final
            self._seqs.append(seq)
            self._seqs.sort()  # concurrent appenders may finish out of order
            self._sizes[seq] = size
        return True

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest readable batch as ``(seq, payload)``; corrupt files are set aside and counted."""
        while True:
            with self._lock:
                if not self._seqs:
                    return None
                seq = self._seqs[0]
            try:
                return seq, self._read(seq)
            except SpoolCorruptError as exc:
                log.warning("kansoku spool: %s; set aside", exc)
                with self._lock:
                    self.corrupt += 1
                    self.corrupt_items += _items_of(self._names.get(seq))
                self._remove(seq, keep_as=".corrupt")

    def items(self, seq: int) -> int:
        """How many records the batch ``seq`` holds (from its file name)."""
        with self._lock:
            return _items_of(self._names.get(seq))

    def ack(self, seq: int) -> None:
        """Forget a batch once it has been delivered."""
        self._remove(seq)

    def close(self) -> None:
        unlock(self._lock_fd)

    def _file(self, seq: int) -> Path:
        with self._lock:
            return self._names.get(seq) or self.path / f"{seq:020d}{_SUFFIX}"

    def _read(self, seq: int) -> bytes:
        path = self._file(seq)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SpoolCorruptError(str(path), f"unreadable: {exc.strerror}") from None
        if len(data) < _HEADER.size:
            raise SpoolCorruptError(str(path), "truncated header")
        magic, crc, length = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        if magic != _MAGIC:
            raise SpoolCorruptError(str(path), "bad magic")
        if len(payload) != length:
            raise SpoolCorruptError(str(path), f"length {len(payload)} != {length}")
        if zlib.crc32(payload) != crc:
            raise SpoolCorruptError(str(path), "checksum mismatch")
        return payload

    def _remove(self, seq: int, keep_as: str | None = None) -> None:
        path = self._file(seq)
        with self._lock:
            if seq in self._sizes:
                self._seqs.remove(seq)
                del self._sizes[seq]
                self._names.pop(seq, None)
        try:
            if keep_as:
                path.replace(path.with_suffix(keep_as))
            else:
                path.unlink(missing_ok=True)
        except OSError:
            log.warning("kansoku spool: could not remove %s", path, exc_info=True)


def _seq_of(path: Path) -> int | None:
    head = path.stem.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _items_of(path: Path | None) -> int:
    """Records in a spool file, from its name (``<seq>-<items>``); 1 for older names."""
    if path is None:
        return 1
    parts = path.stem.split("-", 1)
    return int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else 1


def _take_slot(root: Path) -> tuple[Path, int]:
    for slot in range(_MAX_SLOTS):
        path = root / f"slot-{slot:02d}"
        path.mkdir(exist_ok=True)
        fd = lock_dir(path)
        if fd is not None:
            return path, fd
    raise OSError(f"all {_MAX_SLOTS} spool slots under {root} are in use")
