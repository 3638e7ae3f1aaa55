"""Documents per second through the hub's `/vxp` routes, driven the way SDK systems drive the axis.

The hub runs in its own process (`lgsp run`, production settings, plugins rest + edxml + vxp). Each
pair of units is one sending system and one receiving system, each signing as the SDK does (one
service object: fixed timestamp). A document counts when the sender's sendEdoc has answered and the
receiver has listed it (getReceivedEdocList), fetched it (getEdoc) and acknowledged it
(updateStatus done). Pairs run concurrently, one document in flight per pair.

The baseline, in the same run on the same hub: the same exchange of other documents of the same
size over the hub's own REST API (create, upload, inbox, ready, download, ack), so the ratio is
what the VXP protocol costs next to the native one.

    python -m bench.vxp_bench [--pairs 4] [--docs 50] [--size 16384] [--workdir DIR]

Prints one JSON row: documents/s end to end and sendEdoc calls/s, with the hub's CPU seconds;
`python -m bench.run` makes rows of it (group `vxp`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.procs import HubProcess, Pair
from lgsp.adapters.national_axis.protocol import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_OCTETS,
    format_timestamp,
    hash_file,
    sign_headers,
)
from lgsp.client import LgspClient
from lgsp.core.edxml import build_packet


def document(sender: str, recipient: str, number: int, size: int) -> bytes:
    org = {"organ_id": "", "organization_in_charge": "Bench", "organ_name": "Bench"}
    form = {
        "format": "edxml-json/1", "kind": "edoc",
        "message_header": {
            "from": {**org, "organ_id": sender}, "to": [{**org, "organ_id": recipient}],
            "document_id": f"{sender},2024/05/02,{number}/BENCH", "code": {"code_number": str(number),
                                                                           "code_notation": "BENCH"},
            "promulgation_info": {"place": "Hà Nội", "promulgation_date": "2024/05/02"},
            "document_type": {"type": "1", "type_name": "Công văn"}, "subject": f"Văn bản đo {number}",
            "content": "", "signer_info": {"competence": "", "position": "", "full_name": ""},
            "other_info": {"priority": "0", "sphere_of_promulgation": "", "typer_notation": "",
                           "promulgation_amount": "1", "page_amount": "1"},
            "response_for": [], "steering_type": "0"},
        "trace_header_list": {"trace_header": [{"organ_id": sender, "timestamp": "2024/05/02 08:00:00"}]},
        "attachments": [{"content_id": "cid:1", "attachment_name": "a.bin",
                         "content_type": "application/octet-stream"}],
    }
    out = io.BytesIO()
    build_packet(form, out, attachments={"cid:1": io.BytesIO(hashlib.sha256(str(number).encode()).digest()
                                                             * (size // 32 + 1))})
    return out.getvalue()


class System:
    """One SDK service object: fixed timestamp, every call signed with its parameters."""

    def __init__(self, http: aiohttp.ClientSession, url: str, access_key: str, secret: str) -> None:
        self.http, self.url, self.key, self.secret = http, url + "/vxp", access_key, secret
        self.timestamp = format_timestamp(datetime.now())

    async def call(self, operation: str, params: dict[str, str], body: bytes = b"",
                   content_type: str = CONTENT_TYPE_JSON) -> dict[str, Any]:
        headers = sign_headers(self.key, self.secret, params, content_type=content_type, timestamp=self.timestamp)
        async with self.http.post(f"{self.url}/{operation}", data=body, headers=headers) as resp:
            answer = json.loads(await resp.read())
        if answer.get("ErrorCode") != "0":
            raise RuntimeError(f"{operation}: {answer}")
        return answer  # type: ignore[no-any-return]


async def run_pair(http: aiohttp.ClientSession, url: str, pair: Pair, docs: list[bytes]) -> float:
    """Seconds spent in sendEdoc for this pair's documents (the rest is the receive loop)."""
    sender = System(http, url, pair.source.access_key, pair.source.secret or "")
    receiver = System(http, url, pair.destination.access_key, pair.destination.secret or "")
    send_time = 0.0
    for data in docs:
        start = time.perf_counter()
        sent = await sender.call("sendEdoc", {"servicetype": "eDoc", "messagetype": "edoc",
                                              "hash-file": hash_file(data), "from": pair.source_id},
                                 data + b"\r\n", CONTENT_TYPE_OCTETS)
        send_time += time.perf_counter() - start
        listed = await receiver.call("getReceivedEdocList", {"servicetype": "eDoc", "messagetype": "edoc"})
        assert sent["DocId"] in [i["docId"] for i in listed["data"]]
        got = await receiver.call("getEdoc", {"docId": sent["DocId"]}, b"{}")
        assert base64.b64decode(got["data"])
        await receiver.call("updateStatus", {"docId": sent["DocId"], "status": "done"}, b"{}")
    return send_time


async def rest_pair(pair: Pair, docs: list[bytes]) -> None:
    """The same exchange over the REST API: create, upload, inbox, download, ack."""
    async with LgspClient(pair.source) as sender, LgspClient(pair.destination) as receiver:
        for data in docs:
            digest = hashlib.sha256(data).hexdigest()
            created = await sender.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                                "sha256": digest})
            await sender.upload(created["upload"]["url"], data, digest)
            assert created["id"] in [i["id"] for i in await receiver.inbox()]  # accepted by the upload
            got = await receiver.fetch_bytes(created["id"])
            await receiver.ack(created["id"], hashlib.sha256(got).hexdigest())


async def main(pairs: int, n_docs: int, size: int, workdir: Path) -> dict[str, Any]:
    hub = HubProcess(workdir, overrides={"plugins": {"enabled": ["rest", "edxml", "vxp"]}})
    provisioned = await hub.provision(pairs)
    payloads = [[document(p.source_id, p.destination_id, i, size) for i in range(n_docs)] for p in provisioned]
    await hub.start()
    try:
        proc = psutil.Process(hub.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        start = time.perf_counter()
        async with aiohttp.ClientSession() as http:
            send_times = await asyncio.gather(*(run_pair(http, hub.url, p, d)
                                                for p, d in zip(provisioned, payloads, strict=True)))
        elapsed = time.perf_counter() - start
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        others = [[document(p.source_id, p.destination_id, 100_000 + i, size) for i in range(n_docs)]
                  for p in provisioned]
        cpu0 = sum(proc.cpu_times()[:2])
        start = time.perf_counter()
        await asyncio.gather(*(rest_pair(p, d) for p, d in zip(hub.bound_pairs(), others, strict=True)))
        rest_elapsed = time.perf_counter() - start
        rest_cpu = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        await hub.stop()
    total = pairs * n_docs
    return {"row": "vxp served", "pairs": pairs, "documents": total, "edxml_bytes": len(payloads[0][0]),
            "documents_per_s": round(total / elapsed, 1),
            "send_edoc_per_s_per_pair": round(n_docs * pairs / sum(send_times), 1),
            "hub_cpu_s": round(cpu, 2), "elapsed_s": round(elapsed, 2),
            "rest_documents_per_s": round(total / rest_elapsed, 1), "rest_hub_cpu_s": round(rest_cpu, 2),
            "hub_cpu_ms_per_document": round(1000 * cpu / total, 2),
            "rest_hub_cpu_ms_per_document": round(1000 * rest_cpu / total, 2)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--docs", type=int, default=50)
    parser.add_argument("--size", type=int, default=16384, help="attachment bytes per document")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(asyncio.run(main(args.pairs, args.docs, args.size, args.workdir or Path(tmp)))))
