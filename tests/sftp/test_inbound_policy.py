"""The communication policy on inbound SFTP: a file for a destination its unit may not reach goes
to failed/ with the same code every adapter answers (auth.not_permitted), and nothing is delivered."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .conftest import DEST, SOURCE, SftpServer, eventually, listing, write_submission
from .test_inbound import configured, error_report, inbound, inbox_of, poller, rounds_pass, running
from .test_inbound import server as server  # the fixture


async def test_a_refused_destination_sends_the_file_to_failed(tmp_path: Path, server: SftpServer) -> None:
    outbox = server.root / "outbox"
    cfg = await configured(tmp_path, {SOURCE: inbound(server)})
    async with running(cfg) as (hub, dest):
        await hub.policy.add("deny", SOURCE, DEST, data_type="pdf", by="operator:test")
        data = b"%PDF-1.7 cong van"
        write_submission(outbox, "cv.pdf", data, manifest={
            "to": [DEST], "subject": "Công văn", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "data_type": "pdf", "file": "cv.pdf"})
        await eventually(lambda: (outbox / "failed" / "cv.pdf.error.json").exists(), what="the error report")
        report = error_report(server, "cv.pdf")
        assert report["code"] == "auth.not_permitted" and report["unit"] == SOURCE
        assert "#" not in report["reason"]  # which rule refused stays with the operator
        # The poller counts the file once its report is written: the report can be seen before that.
        await eventually(lambda: poller(hub).failed == 1, what="the failure counted")
        assert poller(hub).submitted == 0
        await rounds_pass(hub, 1)
        assert await inbox_of(dest) == []
        # Another data type is not refused.
        write_submission(outbox, "cv.txt", data, manifest={
            "to": [DEST], "subject": "Công văn", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "data_type": "text", "file": "cv.txt"})

        async def arrived() -> bool:
            return len(await inbox_of(dest)) == 1

        await eventually(arrived, what="the allowed packet")
        assert sorted(listing(outbox / "failed")) == ["cv.pdf", "cv.pdf.error.json", "cv.pdf.manifest.json"]
