"""The signed scan of a registration form: uploaded in the browser (PDF, PNG or JPEG by magic bytes,
bounded size, CSRF), stored encrypted in the blob store, linked from the record, downloadable by
those who may see the record only, and audited."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lgsp.adapters.console.requests import flatten
from lgsp.core.accounts import Accounts, Actor
from lgsp.core.api import Registrations, WorkingCalendar
from lgsp.core.hub import Hub
from lgsp.core.registration.scans import MAX_SCAN_BYTES, Scans

from ..registration.samples import SAMPLES
from .conftest import PASSWORD, sign_in

UNIT, OTHER = "000.00.00.H23", "000.00.01.H23"
PDF = b"%PDF-1.7\n" + b"noi dung ban quet da ky " * 4000 + b"\n%%EOF\n"


async def _request(hub: Hub, accounts: Accounts) -> str:
    await hub.directory.add_unit(UNIT, "Sở Y tế")
    await hub.directory.add_unit(OTHER, "Sở Tài chính")
    for name, role, unit in (("so.yte", "unit_admin", UNIT), ("so.tc", "unit_admin", OTHER),
                             ("duyet", "approver", None), ("xem", "viewer", None)):
        await accounts.add(name, PASSWORD, role, unit_id=unit)
    registrations = Registrations(hub.db, hub.directory, accounts, WorkingCalendar.from_config(hub.config.registration))
    req = await registrations.submit("01", UNIT, {k: v for k, v in flatten(SAMPLES["01"]).items()},
                                     actor=Actor("so.yte", None))
    return req.id


async def _upload(page: Any, form: str, path: Path) -> None:
    await page.set_input_files(f"#scan-file-{form}", str(path))
    async with page.expect_navigation():
        await page.click(f"button[aria-label='Tải lên bản quét Mẫu {form}']")


async def test_unit_uploads_its_signed_request_and_only_allowed_people_download_it(
        hub: Hub, accounts: Accounts, browser: Any, tmp_path: Path) -> None:
    request_id = await _request(hub, accounts)
    url = hub.url + f"/console/requests/{request_id}"
    unit = await (await browser.new_context(accept_downloads=True)).new_page()
    await sign_in(unit, hub, "so.yte")
    await unit.goto(url)
    # Not a PDF, PNG or JPEG (whatever its name says): refused, nothing linked.
    fake = tmp_path / "ban-quet.pdf"
    fake.write_bytes(b"<html><script>alert(1)</script></html>")
    await _upload(unit, "01", fake)
    assert "PDF, PNG hoặc JPEG" in await unit.inner_text("p.error[role=alert]")
    assert await unit.locator("#scan-01").count() == 0
    # Too big: refused.
    big = tmp_path / "lon.pdf"
    big.write_bytes(b"%PDF-1.7\n" + b"0" * MAX_SCAN_BYTES)
    await unit.goto(url)
    await _upload(unit, "01", big)
    assert "10 MB" in await unit.inner_text("p.error[role=alert]")
    assert await Scans(hub.db, hub.blobs).get(request_id, "01") is None
    # A real one.
    scan_file = tmp_path / "mau-01-da-ky.pdf"
    scan_file.write_bytes(PDF)
    await unit.goto(url)
    await _upload(unit, "01", scan_file)
    assert await unit.locator("p.error").count() == 0
    async with unit.expect_download() as info:
        await unit.click("#scan-01")
    download = await info.value
    assert Path(await download.path()).read_bytes() == PDF
    assert download.suggested_filename.endswith("-ban-quet.pdf")
    # Encrypted at rest: the stored file is not the PDF.
    scan = await Scans(hub.db, hub.blobs).get(request_id, "01")
    assert scan is not None and scan.sha256 == hashlib.sha256(PDF).hexdigest()
    stored = hub.blobs.path(scan.blob_key).read_bytes()
    assert b"noi dung ban quet" not in stored and b"%PDF" not in stored
    # The unit cannot upload the answer's scan (there is none yet) nor sign for the province.
    assert await unit.locator("#scan-file-02").count() == 0
    trail = [(e.action, e.detail) for e in await accounts.audit_entries(actor="so.yte")]
    assert trail[0] == ("registration.scan_uploaded", {"form": "01", "content_type": "application/pdf",
                                                       "size": len(PDF), "sha256": hashlib.sha256(PDF).hexdigest()})

    # Another unit's admin: 404 for the record and for the scan; a viewer downloads; nobody without CSRF uploads.
    other = await (await browser.new_context()).new_page()
    await sign_in(other, hub, "so.tc")
    assert (await other.goto(url + "/scan/01")).status == 404
    viewer = await (await browser.new_context()).new_page()
    await sign_in(viewer, hub, "xem")
    await viewer.goto(hub.url + "/console/")
    body = await viewer.evaluate("""async (url) => { const r = await fetch(url);
        return [r.status, r.headers.get('content-type'), (await r.arrayBuffer()).byteLength]; }""", url + "/scan/01")
    assert body == [200, "application/pdf", len(PDF)]
    post = """async ([url, csrf]) => { const fd = new FormData(); fd.append('csrf', csrf);
        fd.append('scan', new Blob(['%PDF-1.7 gia mao']), 'x.pdf');
        return (await fetch(url, {method: 'POST', body: fd})).status; }"""
    assert await unit.evaluate(post, [url + "/scan/01", "sai"]) == 403
    csrf = await viewer.evaluate("document.querySelector('input[name=csrf]').value")
    assert await viewer.evaluate(post, [url + "/scan/01", csrf]) == 403       # a viewer may not upload
    assert await other.evaluate(post, [url + "/scan/01", csrf]) in (403, 404)
    assert (await Scans(hub.db, hub.blobs).get(request_id, "01")).sha256 == hashlib.sha256(PDF).hexdigest()  # type: ignore[union-attr]


async def test_a_new_scan_replaces_the_old_one_and_its_file(hub: Hub, accounts: Accounts, page: Any,
                                                           tmp_path: Path) -> None:
    request_id = await _request(hub, accounts)
    await sign_in(page, hub, "duyet")
    await page.goto(hub.url + f"/console/requests/{request_id}")
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    await _upload(page, "01", png)
    first = await Scans(hub.db, hub.blobs).get(request_id, "01")
    jpg = tmp_path / "b.jpg"
    jpg.write_bytes(b"\xff\xd8\xff\xe0" + b"\x01" * 100)
    await _upload(page, "01", jpg)
    second = await Scans(hub.db, hub.blobs).get(request_id, "01")
    assert first is not None and second is not None
    assert first.content_type == "image/png" and second.content_type == "image/jpeg"
    assert not hub.blobs.exists(first.blob_key) and hub.blobs.exists(second.blob_key)
    # The packet housekeeping does not take a scan for an orphan blob.
    await hub.exchange.reconcile_blobs(min_age_seconds=0)
    assert hub.blobs.exists(second.blob_key)
