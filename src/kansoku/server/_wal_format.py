"""The write-ahead log's on-disk layer: entry framing, a resynchronising scanner, segment recovery, files.

An entry is a 20-byte header followed by the payload::

    magic "KWL1" | u32 crc | u32 length | u64 seq     (big-endian)

The CRC32 covers the payload *and* the length and sequence number (``crc32(payload + length + seq)``),
so a flipped bit in the header is caught as surely as one in the payload. A frame is valid only when its
magic, length (≤ :data:`MAX_PAYLOAD` and inside the file), CRC and sequence number (greater than the
previous valid frame's) all check out. :func:`scan` walks a segment frame by frame; on damage it
resynchronises on the next offset holding a valid frame and reports the skipped bytes as a
:class:`Damage`, so one bad entry never hides the ones after it. (A resync could only be fooled by
a payload that embeds a whole valid frame with a higher sequence number; JSON payloads cannot, as
the header's zero bytes would be escaped.)
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kansoku._fsutil import fsync_dir

log = logging.getLogger("kansoku.wal")

MAGIC = b"KWL1"
HEADER = struct.Struct(">4sIIQ")  # magic, crc32, len(payload), seq
_LEN_SEQ = struct.Struct(">IQ")
MAX_PAYLOAD = 256 * 1024 * 1024  # a longer length field is "impossible": treated as damage

CHECKPOINT = "checkpoint"
_CKPT_MAGIC = b"KWC1"
_CKPT = struct.Struct(">4sQI")  # magic, seq, crc32(seq)


@dataclass(frozen=True, slots=True)
class Frame:
    """A valid entry: its sequence number and where its payload lies in the scanned buffer."""

    seq: int
    start: int  # offset of the header
    payload_start: int
    end: int  # offset just past the payload


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes that are not valid frames. ``tail``: no valid frame follows them in the buffer."""

    start: int
    length: int
    tail: bool


def payload_crc(payload: bytes) -> int:
    """The part of the CRC that does not depend on the sequence number (computed outside locks)."""
    return zlib.crc32(payload)


def header(seq: int, length: int, pcrc: int) -> bytes:
    """The header of an entry whose payload has ``length`` bytes and CRC ``pcrc``."""
    return HEADER.pack(MAGIC, zlib.crc32(_LEN_SEQ.pack(length, seq), pcrc), length, seq)


def encode(seq: int, payload: bytes) -> bytes:
    """One whole framed entry (tests and tools; the log itself writes header and payload apart)."""
    return header(seq, len(payload), payload_crc(payload)) + payload


def frame_at(data: bytes, view: memoryview, pos: int, after: int) -> Frame | None:
    """The valid frame starting at ``pos`` with a sequence number above ``after``, if there is one."""
    if len(data) - pos < HEADER.size:
        return None
    magic, crc, length, seq = HEADER.unpack_from(data, pos)
    body = pos + HEADER.size
    if magic != MAGIC or length > MAX_PAYLOAD or body + length > len(data) or seq <= after:
        return None
    if zlib.crc32(_LEN_SEQ.pack(length, seq), zlib.crc32(view[body : body + length])) != crc:
        return None
    return Frame(seq, pos, body, body + length)


def scan(data: bytes, after: int = -1) -> Iterator[Frame | Damage]:
    """Every valid frame of ``data`` in order, and a :class:`Damage` for each run of bytes in between.

    ``after`` is a lower bound on sequence numbers (exclusive): a frame must also have a sequence
    number above the previous valid one, so stale or embedded look-alikes are not taken for entries.
    """
    view = memoryview(data)
    try:
        pos, last = 0, after
        while pos < len(data):
            frame = frame_at(data, view, pos, last)
            if frame is not None:
                yield frame
                pos, last = frame.end, frame.seq
                continue
            nxt = pos
            while True:
                nxt = data.find(MAGIC, nxt + 1)
                if nxt < 0:
                    yield Damage(pos, len(data) - pos, tail=True)
                    return
                if frame_at(data, view, nxt, last) is not None:
                    break
            yield Damage(pos, nxt - pos, tail=False)
            pos = nxt
    finally:
        view.release()


def encode_checkpoint(seq: int) -> bytes:
    raw = seq.to_bytes(8, "big")
    return _CKPT.pack(_CKPT_MAGIC, seq, zlib.crc32(raw))


def decode_checkpoint(data: bytes) -> int | None:
    """The sequence number in a checkpoint file, or ``None`` when the file is damaged."""
    if len(data) != _CKPT.size:
        return None
    magic, seq, crc = _CKPT.unpack(data)
    if magic != _CKPT_MAGIC or zlib.crc32(seq.to_bytes(8, "big")) != crc:
        return None
    return int(seq)


def segment_name(first_seq: int) -> str:
    return f"wal-{first_seq:020d}.log"


def segment_seq(name: str) -> int | None:
    """The first sequence number encoded in a segment file name, or ``None`` for other files."""
    if not (name.startswith("wal-") and name.endswith(".log")):
        return None
    digits = name[4:-4]
    return int(digits) if len(digits) == 20 and digits.isdigit() else None


def read_checkpoint(directory: Path) -> int | None:
    """The persisted checkpoint (0 when there is none), or ``None`` when its file is damaged."""
    (directory / (CHECKPOINT + ".tmp")).unlink(missing_ok=True)  # a write that never reached its rename
    try:
        return decode_checkpoint((directory / CHECKPOINT).read_bytes())
    except FileNotFoundError:
        return 0


def write_checkpoint(directory: Path, seq: int) -> None:
    """Atomically replace the checkpoint: write a temporary file, fsync, rename, fsync the directory."""
    tmp = directory / (CHECKPOINT + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(encode_checkpoint(seq))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(directory / CHECKPOINT)
    fsync_dir(directory)


@dataclass(slots=True)
class Recovery:
    """What opening a log directory found."""

    segments: list[tuple[int, Path]] = field(default_factory=list)  # (first seq, path), in order
    unapplied: list[tuple[int, int]] = field(default_factory=list)  # (seq, framed size) above the checkpoint
    last_seq: int = 0
    corrupt: int = 0
    skipped: int = 0
    truncated: int = 0


def recover(directory: Path, checkpoint: int) -> Recovery:
    """Delete segments wholly at or below ``checkpoint``, verify the rest, cut the last one's torn tail.

    Damage anywhere else is skipped and counted; empty segments (a crash right after a roll) are
    deleted. Never raises on damaged data.
    """
    found = sorted((s, p) for p in directory.iterdir() if (s := segment_seq(p.name)) is not None)
    rec = Recovery(last_seq=checkpoint)
    for i, (first, path) in enumerate(found):
        if i + 1 < len(found) and found[i + 1][0] <= checkpoint + 1:
            path.unlink()
            continue
        data = path.read_bytes()
        for item in scan(data):
            if isinstance(item, Frame):
                rec.last_seq = max(rec.last_seq, item.seq)
                if item.seq > checkpoint:
                    rec.unapplied.append((item.seq, item.end - item.start))
            elif item.tail and i == len(found) - 1:
                truncate(path, item.start)
                rec.truncated += item.length
                log.warning("kansoku WAL: cut a torn tail of %d bytes from %s", item.length, path)
            else:
                rec.corrupt += 1
                rec.skipped += item.length
                log.warning("kansoku WAL: skipped %d damaged bytes in %s", item.length, path)
        if path.stat().st_size == 0:
            path.unlink()
        else:
            rec.segments.append((first, path))
            rec.last_seq = max(rec.last_seq, first)
    rec.unapplied.sort()
    return rec


def replay(segments: list[tuple[int, Path]], after: int, upto: int) -> Iterator[tuple[int, bytes]]:
    """``(seq, payload)`` of the valid entries with ``after < seq <= upto`` in ``segments``, in order."""
    for i, (first, path) in enumerate(segments):
        if first > upto:
            break
        if i + 1 < len(segments) and segments[i + 1][0] <= after + 1:
            continue  # wholly applied
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # deleted by a concurrent checkpoint, so applied
        for item in scan(data):
            if isinstance(item, Frame) and after < item.seq <= upto:
                yield item.seq, data[item.payload_start : item.end]


def truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
