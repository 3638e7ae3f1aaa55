"""Benchmark of the edXML library: validated packets per second and memory on a large packet.

``run(quick)`` returns a dict (for the project's bench harness); ``python bench/edxml_bench.py
[--quick]`` prints a table. Packets are generated here (header + pseudo-random attachment) so
the benchmark needs no fixture files:

* ~10 KB and ~1 MB packets: ``parse_packet`` (stream, decode, hash, validate, JSON header)
  against lxml's bare ``etree.fromstring`` of the same bytes (no validation, no decoding),
  the floor any Python XML processing pays;
* a ~200 MB packet (~20 MB with ``quick``) written to a temp dir and parsed from disk, with the
  peak RSS growth sampled every 2 ms.
"""

from __future__ import annotations

import hashlib
import io
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from lxml import etree

from lgsp.core.edxml import AttachmentMeta, build_packet, parse_packet

ORG = {
    "organization_in_charge": "UBND tỉnh Quảng Nam",
    "organ_name": "Văn phòng UBND tỉnh Quảng Nam",
    "organ_add": "62 Hùng Vương, TP. Tam Kỳ, tỉnh Quảng Nam",
    "email": "vanphong@quangnam.gov.vn",
    "telephone": "0235 3810 000",
    "fax": "0235 3810 001",
    "website": "quangnam.gov.vn",
}


def header(recipients: int = 3) -> dict[str, Any]:
    """A realistic edoc JSON form (3 recipients, Vietnamese text, Bussiness block)."""
    return {
        "kind": "edoc",
        "message_header": {
            "from": {"organ_id": "000.00.00.H45", **ORG},
            "to": [{"organ_id": f"000.0{i}.31.H45", **ORG} for i in range(recipients)],
            "document_id": "000.00.00.H45,2024/03/15,125/QĐ-UBND",
            "code": {"code_number": "125", "code_notation": "QĐ-UBND"},
            "promulgation_info": {"place": "Quảng Nam", "promulgation_date": "2024/03/15"},
            "document_type": {"type": "1", "type_detail": "0", "type_name": "Công văn"},
            "subject": "V/v triển khai Kế hoạch chuyển đổi số năm 2024",
            "content": "Giao các Sở, ban, ngành triển khai thực hiện; báo cáo trước ngày 30/6/2024.",
            "signer_info": {"competence": "TM. UBND TỈNH", "position": "Phó Chủ tịch", "full_name": "Nguyễn Văn A"},
            "due_date": "2024/06/30",
            "other_info": {
                "priority": "0",
                "sphere_of_promulgation": "Liên thông văn bản quốc gia",
                "typer_notation": "TTH",
                "promulgation_amount": "5",
                "page_amount": "12",
                "direction": "false",
                "appendixes": ["Phụ lục I", "Phụ lục II"],
            },
            "response_for": [],
            "steering_type": "1",
            "to_places": ["Như trên", "Lưu: VT"],
        },
        "trace_header_list": {
            "trace_header": [{"organ_id": "000.00.00.H45", "timestamp": "2024/03/15 08:15:30"}],
            "bussiness": {
                "document_id": "000.00.00.H45,2024/03/15,125/QĐ-UBND",
                "bussiness_doc_type": "0",
                "bussiness_doc_reason": "Văn bản điện tử mới",
                "paper": "0",
                "staff_info": {
                    "department": "Văn thư",
                    "staff": "Trần Thị B",
                    "email": "vanthu@quangnam.gov.vn",
                    "mobile": "0905123456",
                },
            },
        },
        "signature": {
            "xml": '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>'
            '<CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>'
            "</SignedInfo><SignatureValue>AAAA</SignatureValue></Signature>"
        },
        "attachments": [
            {"content_id": "cid:1", "attachment_name": "cong-van.zip", "content_type": "application/zip"}
        ],
    }


class PatternReader(io.RawIOBase):
    """``size`` pseudo-random bytes, produced on the fly from a 1 MiB block."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._block = random.Random(1).randbytes(1 << 20)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left, len(self._block))
        if n <= 0:
            return 0
        buffer[:n] = self._block[:n]
        self._left -= n
        return n


def packet_bytes(payload_size: int) -> bytes:
    out = io.BytesIO()
    build_packet(header(), out, attachments={"cid:1": io.BufferedReader(PatternReader(payload_size))})
    return out.getvalue()


def rate(fn: Any, seconds: float) -> tuple[float, float]:
    """(calls per wall second, calls per CPU second) of ``fn`` over about ``seconds``.

    The CPU-time figure is the one to compare on a shared machine: it ignores time the process
    spent waiting for a core.
    """
    fn()
    count = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + seconds
    while True:
        fn()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            cpu = max(time.process_time() - cpu_started, 1e-9)
            return count / (now - started), count / cpu


class _Hasher:
    def __init__(self) -> None:
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return len(data)

    def close(self) -> None:
        pass


def throughput(payload_size: int, seconds: float) -> dict[str, float]:
    data = packet_bytes(payload_size)
    bare_parser = etree.XMLParser(huge_tree=True)

    def ours() -> None:
        parse_packet(data, attachment_sink=lambda meta: _Hasher())

    def bare() -> None:
        etree.fromstring(data, bare_parser)

    ours_wall, ours_cpu = rate(ours, seconds)
    bare_wall, bare_cpu = rate(bare, seconds)
    return {
        "packet_bytes": len(data),
        "edxml_packets_per_s": round(ours_wall, 1),
        "lxml_fromstring_per_s": round(bare_wall, 1),
        "edxml_packets_per_cpu_s": round(ours_cpu, 1),
        "lxml_fromstring_per_cpu_s": round(bare_cpu, 1),
        "edxml_mb_per_cpu_s": round(ours_cpu * len(data) / 1e6, 1),
        "slowdown_vs_lxml": round(bare_cpu / ours_cpu, 1),
    }


def large(payload_size: int) -> dict[str, float]:
    process = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="edxml-bench-") as tmp:
        path = Path(tmp) / "large.edxml"
        with path.open("wb") as fh:
            build_packet(header(), fh, attachments={"cid:1": io.BufferedReader(PatternReader(payload_size))})
        size = path.stat().st_size
        peak = baseline = process.memory_info().rss
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.002)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        started = time.perf_counter()
        cpu_started = time.process_time()
        try:

            def sink(meta: AttachmentMeta) -> _Hasher:
                return _Hasher()

            packet = parse_packet(path, attachment_sink=sink)
        finally:
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            stop.set()
            thread.join()
        peak = max(peak, process.memory_info().rss)
        assert packet.attachments[0].size == payload_size
    return {
        "packet_bytes": size,
        "parse_seconds": round(elapsed, 2),
        "parse_mb_per_s": round(size / 1e6 / elapsed, 1),
        "parse_cpu_seconds": round(cpu, 2),
        "rss_before_mb": round(baseline / 2**20, 1),
        "peak_rss_growth_mb": round((peak - baseline) / 2**20, 1),
    }


def run(quick: bool) -> dict[str, Any]:
    """Measure and return the results; ``quick`` shortens timings and the large packet (~20 MB)."""
    seconds = 0.3 if quick else 2.0
    return {
        "small_10kb": throughput(6_000, seconds),
        "medium_1mb": throughput(750_000, seconds),
        "large": large(15_000_000 if quick else 150_000_000),
    }


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    results = run(quick)
    print(f"edXML bench ({'quick' if quick else 'full'})")
    print(f"{'packet':<12}{'bytes':>12}{'edxml/s':>10}{'lxml/s':>10}{'edxml/cpu-s':>13}{'lxml/cpu-s':>12}{'x lxml':>8}")
    for name in ("small_10kb", "medium_1mb"):
        r = results[name]
        print(
            f"{name:<12}{r['packet_bytes']:>12,}{r['edxml_packets_per_s']:>10,.0f}{r['lxml_fromstring_per_s']:>10,.0f}"
            f"{r['edxml_packets_per_cpu_s']:>13,.0f}{r['lxml_fromstring_per_cpu_s']:>12,.0f}"
            f"{r['slowdown_vs_lxml']:>8.1f}"
        )
    big = results["large"]
    print(
        f"large packet {big['packet_bytes'] / 1e6:,.0f} MB: parsed in {big['parse_seconds']} s "
        f"({big['parse_cpu_seconds']} s CPU) "
        f"({big['parse_mb_per_s']} MB/s), peak RSS growth {big['peak_rss_growth_mb']} MiB "
        f"(RSS before {big['rss_before_mb']} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
