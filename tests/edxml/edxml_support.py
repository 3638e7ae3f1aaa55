"""Helpers shared by the edXML tests (imported by conftest.py and the test modules).

A uniquely named module rather than ``conftest`` imports, so it cannot clash with the
project's root ``tests/conftest.py``.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lgsp.core.edxml import AttachmentMeta

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_SAMPLES = Path("/work/shared/reference/edxml-samples")

EDOC_FIXTURES = ("edoc_new", "edoc_revocation", "edoc_update", "edoc_replacement")
STATUS_CODES = ("01", "02", "03", "04", "05", "06", "13", "15", "16")
STATUS_FIXTURES = tuple(f"status_{c}" for c in STATUS_CODES)


def fixture(name: str) -> bytes:
    """The bytes of ``fixtures/<name>.edxml``."""
    return (FIXTURES / f"{name}.edxml").read_bytes()


@dataclass
class RecordingWriter:
    """A sink writer that keeps what it was given, so tests can check every byte and call."""

    meta: AttachmentMeta
    chunks: list[bytes] = field(default_factory=list)
    closed: int = 0
    aborted: int = 0
    fail_after: int | None = None

    def write(self, data: bytes) -> int:
        if self.fail_after is not None and sum(map(len, self.chunks)) + len(data) > self.fail_after:
            raise OSError("disk full (simulated)")
        self.chunks.append(bytes(data))
        return len(data)

    def close(self) -> str:
        self.closed += 1
        return f"blob:{self.meta.index}"

    def abort(self) -> None:
        self.aborted += 1

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class RecordingSink:
    """``attachment_sink`` that hands out RecordingWriters and remembers them."""

    writers: list[RecordingWriter] = field(default_factory=list)
    fail_after: int | None = None

    def __call__(self, meta: AttachmentMeta) -> RecordingWriter:
        w = RecordingWriter(meta, fail_after=self.fail_after)
        self.writers.append(w)
        return w


class PatternReader(io.RawIOBase):
    """``size`` pseudo-random bytes produced on the fly (never held in memory at once)."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self._left = size
        self._block = random.Random(seed).randbytes(1 << 20)
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left, len(self._block) - self._offset)
        if n <= 0:
            return 0
        buffer[:n] = self._block[self._offset : self._offset + n]
        self._offset = (self._offset + n) % len(self._block)
        self._left -= n
        return n


class RssProbe:
    """Samples this process's RSS in a thread; ``growth`` is the peak above the baseline."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.baseline = 0
        self.peak = 0

    @contextmanager
    def measure(self) -> Iterator[RssProbe]:
        self.baseline = self.peak = self.process.memory_info().rss
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                self.peak = max(self.peak, self.process.memory_info().rss)
                time.sleep(0.002)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
