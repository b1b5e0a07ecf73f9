"""The Postgres ledger's spool: an append-only local file of batches waiting for the database.

Frame layout (little-endian), one per batch::

    magic "FWsp" | payload length u32 | crc32 u32 | calls u32 | attempts u32 | payload

The CRC covers the two counts and the payload, so a frame cut short by a crash (or a torn page)
is recognised when the file is opened again: everything from the first bad frame on is cut off
(logged), everything before it is kept.  The counts are in the header so that opening a large
spool needs no decoding, only a CRC pass.

Every :meth:`Spool.append` ends with ``fsync``: a batch the caller was told is spooled survives
a SIGKILL of the gateway (and, the directory entry being synced too, a power cut).  The file is
locked (``flock``) by the process using it; a second process on the same state dir gets a file
of its own (``<path>.<pid>``), and the spools of processes that are gone are adopted by the next
one that starts (:func:`adopt_orphans`).

This module does blocking I/O; the store calls it from a worker thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("fareway.ledger")

_HEAD = struct.Struct("<4sIIII")
MAGIC = b"FWsp"
HEADER = _HEAD.size
MAX_PAYLOAD = 1 << 30


@dataclass(slots=True)
class Entry:
    """Where one spooled frame is, and how many calls and attempts it holds."""

    offset: int
    size: int
    calls: int
    attempts: int


def _crc(calls: int, attempts: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<II", calls, attempts)))


def encode_frame(payload: bytes, calls: int, attempts: int) -> bytes:
    return _HEAD.pack(MAGIC, len(payload), _crc(calls, attempts, payload), calls, attempts) + payload


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.end = 0
        self._fd: int | None = None

    # -- open, scan, close

    def try_open(self) -> bool:
        """Create or open the file and lock it.  False when another live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        _fsync_dir(self.path.parent)
        return True

    def scan(self) -> list[Entry]:
        """The valid frames in the file, in order; a damaged tail is cut off (and logged)."""
        entries = list(self._frames())
        size = os.fstat(self._require()).st_size
        good = entries[-1].offset + HEADER + entries[-1].size if entries else 0
        if good < size:
            log.warning(
                "ledger spool %s: %d byte(s) at offset %d are not a whole frame (a write cut short "
                "by a crash); dropped them, kept %d frame(s)",
                self.path,
                size - good,
                good,
                len(entries),
            )
            os.ftruncate(self._require(), good)
            os.fsync(self._require())
        self.end = good
        return entries

    def _frames(self) -> Iterator[Entry]:
        fd = self._require()
        offset = 0
        while True:
            head = os.pread(fd, HEADER, offset)
            if len(head) < HEADER:
                return
            magic, size, crc, calls, attempts = _HEAD.unpack(head)
            if magic != MAGIC or size > MAX_PAYLOAD:
                return
            payload = os.pread(fd, size, offset + HEADER)
            if len(payload) < size or _crc(calls, attempts, payload) != crc:
                return
            yield Entry(offset, size, calls, attempts)
            offset += HEADER + size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def _require(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"ledger spool {self.path} is not open")
        return self._fd

    # -- append, read, reset

    def append(self, frames: list[tuple[bytes, int, int]]) -> list[Entry]:
        """Append ``(payload, calls, attempts)`` frames and fsync; returns where they are."""
        fd = self._require()
        entries: list[Entry] = []
        data = bytearray()
        offset = self.end
        for payload, calls, attempts in frames:
            entries.append(Entry(offset + len(data), len(payload), calls, attempts))
            data += encode_frame(payload, calls, attempts)
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.pwrite(fd, view[written:], offset + written)
        os.fsync(fd)
        self.end = offset + len(data)
        return entries

    def read(self, entry: Entry) -> bytes:
        payload = os.pread(self._require(), entry.size, entry.offset + HEADER)
        if len(payload) != entry.size:
            raise OSError(f"ledger spool {self.path}: frame at {entry.offset} is short")
        return payload

    def reset(self) -> None:
        """Everything in the file is in the database: empty it."""
        fd = self._require()
        os.ftruncate(fd, 0)
        os.fsync(fd)
        self.end = 0


def own_spool(path: Path) -> Spool:
    """The spool this process writes: ``path``, or ``path.<pid>`` when another live process
    holds ``path``."""
    spool = Spool(path)
    if spool.try_open():
        return spool
    mine = Spool(path.with_name(f"{path.name}.{os.getpid()}"))
    if not mine.try_open():
        raise OSError(f"ledger spool {mine.path} is locked by another process")
    log.warning("ledger spool %s is in use by another process; this one spools to %s", path, mine.path)
    return mine


def adopt_orphans(base: Path, own: Spool) -> list[tuple[Spool, list[tuple[bytes, int, int]]]]:
    """The spools left by processes that are gone: ``base`` and its ``base.<pid>`` siblings that
    nobody holds (other than ``own``), each opened and locked, with its frames as
    ``(payload, calls, attempts)``.  The caller appends the frames to ``own``, then calls
    :func:`discard` on each (which deletes the file while still holding its lock)."""
    candidates = [base, *(p for p in sorted(base.parent.glob(base.name + ".*")) if p.suffix[1:].isdigit())]
    found: list[tuple[Spool, list[tuple[bytes, int, int]]]] = []
    for path in candidates:
        if path == own.path or not path.is_file():
            continue
        other = Spool(path)
        if not other.try_open():
            continue  # its process is alive
        try:
            frames = [(other.read(e), e.calls, e.attempts) for e in other.scan()]
        except BaseException:
            other.close()
            raise
        found.append((other, frames))
    return found


def discard(spool: Spool) -> None:
    """Delete an adopted spool's file (its frames are safely elsewhere) and release it."""
    spool.path.unlink(missing_ok=True)
    _fsync_dir(spool.path.parent)
    spool.close()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
