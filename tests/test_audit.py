"""The tamper-evident audit log: entries chained after the fact without loss, `verify` naming the
first altered, removed or inserted entry, seals signed with the hub's key, offline export checks."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from lgsp.cli.main import main
from lgsp.core import audit
from lgsp.core.audit import GENESIS, AuditChain, entry_hash, entry_of, verify_export
from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.store.tables import audit_log, audit_seals

from .conftest import base_env

U = "000.00.{:02d}.H23"


async def facts(hub: Hub, count: int = 5) -> None:
    """`count` units added by an operator: one audit entry each."""
    with audit.acting_as("operator:test"):
        for i in range(count):
            await hub.directory.add_unit(U.format(i), f"Đơn vị {i}")


async def rows(hub: Hub) -> list[Any]:
    async with hub.db.read() as conn:
        return list((await conn.execute(select(audit_log).where(audit_log.c.seq.is_not(None))
                                        .order_by(audit_log.c.seq))).all())


async def test_entries_are_chained_in_order_and_verify(hub: Hub) -> None:
    await facts(hub)
    await hub.audit.chain()
    chained = await rows(hub)
    assert [r.seq for r in chained] == [1, 2, 3, 4, 5]
    assert [r.action for r in chained] == ["unit.added"] * 5 and {r.actor for r in chained} == {"operator:test"}
    assert chained[0].prev_hash == GENESIS
    for before, row in itertools.pairwise(chained):
        assert row.prev_hash == before.hash
        assert row.hash == entry_hash(row.prev_hash, entry_of(row))
    report = await hub.audit.verify()
    assert report.ok and report.checked == 5 and report.pending == 0


async def test_an_altered_entry_is_found(hub: Hub) -> None:
    await facts(hub)
    await hub.audit.chain()
    async with hub.db.write() as conn:
        await conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor="someone-else"))
    report = await hub.audit.verify()
    [finding] = report.findings
    assert (finding.kind, finding.seq) == ("altered", 3)
    assert report.checked == 5  # the walk goes on to the end, reporting the first finding only


async def test_a_deleted_entry_is_found(hub: Hub) -> None:
    await facts(hub)
    await hub.audit.chain()
    async with hub.db.write() as conn:
        await conn.execute(audit_log.delete().where(audit_log.c.seq == 2))
    [finding] = (await hub.audit.verify()).findings
    assert (finding.kind, finding.seq) == ("removed", 2)


async def test_an_inserted_entry_is_found(hub: Hub) -> None:
    """Someone makes room after seq 2 and writes a well-formed entry there, hash and all."""
    await facts(hub)
    await hub.audit.chain()
    chained = await rows(hub)
    async with hub.db.write() as conn:
        for row in reversed(chained[2:]):
            await conn.execute(update(audit_log).where(audit_log.c.id == row.id).values(seq=row.seq + 1))
        forged = {"at": chained[1].at, "actor": "operator:test", "address": None, "action": "key.revoked",
                  "target": "AKFORGED", "unit_id": U.format(1), "detail": None}
        new_id = await conn.scalar(audit_log.insert().values(**forged).returning(audit_log.c.id))
        entry = {"seq": 3, "id": new_id, "at": audit._time(chained[1].at), "actor": "operator:test", "address": None,
                 "action": "key.revoked", "target": "AKFORGED", "unit": U.format(1), "detail": None}
        await conn.execute(update(audit_log).where(audit_log.c.id == new_id).values(
            seq=3, prev_hash=chained[1].hash, hash=entry_hash(chained[1].hash, entry)))
    [finding] = (await hub.audit.verify()).findings
    assert (finding.kind, finding.seq) == ("inserted", 3)


async def test_a_consistently_rewritten_chain_is_caught_by_the_seal(hub: Hub) -> None:
    """Hashes carry no secret: whoever rewrites every hash after an edit passes the chain check,
    but not the signed seal of an earlier head."""
    await facts(hub)
    seal = await hub.audit.seal()
    assert seal is not None and seal["seq"] >= 5
    assert (await hub.audit.verify()).ok
    chained = await rows(hub)
    async with hub.db.write() as conn:
        await conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(target="000.00.09.H23"))
        prev = chained[0].hash
        for row in chained[1:]:
            fresh = (await conn.execute(select(audit_log).where(audit_log.c.id == row.id))).one()
            digest = entry_hash(prev, entry_of(fresh))
            await conn.execute(update(audit_log).where(audit_log.c.id == row.id).values(prev_hash=prev, hash=digest))
            prev = digest
    report = await hub.audit.verify()
    [finding] = report.findings
    assert finding.kind == "seal" and finding.seq == seal["seq"]
    # A forged seal does not help either.
    async with hub.db.write() as conn:
        await conn.execute(update(audit_seals).values(hash=prev))
    [finding] = (await hub.audit.verify()).findings
    assert finding.kind == "seal" and "signature" in finding.detail


async def test_sealing_twice_without_news_signs_nothing(hub: Hub) -> None:
    await facts(hub, 2)
    assert await hub.audit.seal() is not None
    assert await hub.audit.seal() is None
    async with hub.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(audit_seals)) == 1


async def test_entries_written_before_a_crash_are_chained_at_the_next_start(tmp_path: Path) -> None:
    """The entry is in the transaction of its fact; a hub that dies before chaining loses nothing."""
    cfg = load_config(None, env=base_env(tmp_path / "var", LGSP_AUDIT_CHAIN_INTERVAL_SECONDS="3600"))
    hub = Hub(cfg)
    await hub.open_store()
    await facts(hub, 3)
    await hub.db.close()  # no chaining happened: as if the process had been killed here
    fast = cfg.replace(audit={"chain_interval_seconds": 0.05})
    async with Hub(fast) as again:
        async def chained() -> bool:
            return len(await rows(again)) == 3

        from .conftest import wait_for

        await wait_for(chained, what="the entries of the earlier run to be chained")
        assert (await again.audit.verify()).ok


async def test_two_chainers_at_once_make_one_chain(hub: Hub) -> None:
    await facts(hub, 40)
    other = AuditChain(hub.db, hub._audit_signer, hub.algorithms, batch=7)
    mine = AuditChain(hub.db, hub._audit_signer, hub.algorithms, batch=5)
    await asyncio.gather(other.chain(), mine.chain(), hub.audit.chain())
    assert [r.seq for r in await rows(hub)] == list(range(1, 41))
    assert (await hub.audit.verify()).ok


async def test_verify_from_a_date_checks_the_link_into_the_range(hub: Hub) -> None:
    await facts(hub, 4)
    await hub.audit.chain()
    chained = await rows(hub)
    report = await hub.audit.verify(chained[2].at)
    assert report.ok and report.first_seq == 3 and report.checked == 2


async def test_export_verifies_offline_and_shows_tampering(hub: Hub) -> None:
    await facts(hub, 4)
    doc = json.loads(json.dumps(await hub.audit.export()))  # as written to a file
    assert doc["seals"] and doc["keys"]
    assert verify_export(doc) == []
    bad = json.loads(json.dumps(doc))
    bad["entries"][1]["detail"]["name"] = "Đơn vị khác"
    assert any("seq 2" in p for p in verify_export(bad))
    bad = json.loads(json.dumps(doc))
    del bad["entries"][1]
    assert verify_export(bad)
    bad = json.loads(json.dumps(doc))
    bad["seals"][0]["signed_at"] = "2020-01-01T00:00:00.000000Z"
    assert any("signature" in p for p in verify_export(bad))


async def test_audit_on_postgres(pg_url: str, tmp_path: Path) -> None:
    cfg = load_config(None, env=base_env(tmp_path / "var", LGSP_DATABASE_URL=pg_url))
    async with Hub(cfg) as hub:
        await facts(hub, 6)
        others = [AuditChain(hub.db, hub._audit_signer, hub.algorithms, batch=2) for _ in range(3)]
        await asyncio.gather(*(c.chain() for c in others))
        assert [r.seq for r in await rows(hub)] == list(range(1, 7))
        await hub.audit.seal()
        assert (await hub.audit.verify()).ok
        async with hub.db.write() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.seq == 4).values(action="unit.removed"))
        [finding] = (await hub.audit.verify()).findings
        assert (finding.kind, finding.seq) == ("altered", 4)


# -- the CLI ------------------------------------------------------------------------------------------

def test_cli_verify_sign_export(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    async def prepare() -> None:
        async with Hub(load_config(None, env=base_env(tmp_path / "var"))) as hub:
            await facts(hub, 3)

    asyncio.run(prepare())
    cfg_file = tmp_path / "lgsp.yaml"
    cfg_file.write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\nsecurity:\n  rsa_key_bits: 2048\n", encoding="utf-8")
    monkeypatch.setenv("LGSP_LANG", "en")

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--config", str(cfg_file)])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = cli("audit", "verify")
    assert code == 0 and "intact" in out and "no seal yet" in out
    code, out, _ = cli("audit", "sign")
    assert code == 0 and "signed the chain head" in out
    code, out, _ = cli("audit", "sign")
    assert code == 0 and "has not moved" in out
    code, out, _ = cli("audit", "export", "-o", str(tmp_path / "export.json"), "--from", "2020-01-01")
    assert code == 0
    doc = json.loads((tmp_path / "export.json").read_text("utf-8"))
    assert (tmp_path / "export.json").stat().st_mode & 0o777 == 0o600
    assert verify_export(doc) == [] and len(doc["entries"]) >= 3

    async def alter() -> None:
        hub = Hub(load_config(cfg_file, env={}))
        await hub.open_store()
        try:
            async with hub.db.write() as conn:
                await conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(actor="x"))
        finally:
            await hub.db.close()

    asyncio.run(alter())
    code, out, _ = cli("audit", "verify")
    assert code == 2 and "TAMPERING FOUND (altered) at seq 2" in out and "does not match its hash" in out
    code, out, _ = cli("audit", "verify", "--json")
    assert code == 2 and json.loads(out)["findings"][0]["seq"] == 2
    assert "does not match its hash" in json.loads(out)["findings"][0]["detail"]  # the machine form: English
    monkeypatch.setenv("LGSP_LANG", "vi")  # the finding itself reads in the CLI's language, not only its lead-in
    code, out, _ = cli("audit", "verify")
    assert code == 2 and "không khớp mã băm" in out and "does not match" not in out
    monkeypatch.setenv("LGSP_LANG", "en")
    code, out, err = cli("audit", "verify", "--from", "yesterday")
    assert code == 1 and out == "" and "YYYY-MM-DD" in err and err.count("\n") == 1


async def test_the_exchange_records_creation_acceptance_and_each_delivery_end(hub: Hub, make_actor: Any) -> None:
    a = await make_actor("000.00.01.H23")
    b = await make_actor("000.00.02.H23")
    c = await make_actor("000.00.03.H23")
    data = b"noi dung cong van"
    packet_id = await a.client.send(data, [b.unit, c.unit], subject="x")
    [item] = await b.client.inbox()
    got = await b.client.fetch_bytes(item["id"])
    await b.client.ack(packet_id, hashlib.sha256(got).hexdigest())
    await c.client.fail(packet_id, "không thuộc thẩm quyền")
    await hub.audit.chain()
    async with hub.db.read() as conn:
        found = (await conn.execute(select(audit_log).where(audit_log.c.target == packet_id)
                                    .order_by(audit_log.c.seq))).all()
    by_action = {r.action: r for r in found}
    assert [r.action for r in found] == ["packet.created", "packet.accepted", "delivery.delivered", "delivery.failed"]
    created = by_action["packet.created"]
    assert created.actor == a.unit and created.detail["application"] == a.key.application_id
    assert created.detail["sha256"] == hashlib.sha256(data).hexdigest()
    assert by_action["delivery.delivered"].unit_id == b.unit
    assert by_action["delivery.delivered"].detail["sha256"] == hashlib.sha256(data).hexdigest()
    assert by_action["delivery.failed"].detail["reason"] == "không thuộc thẩm quyền"
    assert (await hub.audit.verify()).ok
    # An operator's action names the operator.
    packet_2 = await a.client.send(data, [b.unit], subject="y")
    with audit.acting_as("operator:nguyen"):
        await hub.exchange.operator_cancel(packet_2, b.unit)
    await hub.audit.chain()
    async with hub.db.read() as conn:
        row = (await conn.execute(select(audit_log).where(audit_log.c.action == "operator.delivery_cancelled"))).one()
    assert row.actor == "operator:nguyen" and row.detail["units"] == [b.unit]


async def test_the_offline_script_in_the_docs_checks_an_export(hub: Hub, tmp_path: Path) -> None:
    """docs/security.md gives auditors a script: it must accept an export and refuse an altered one."""
    import subprocess
    import sys

    text = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text("utf-8")
    script = text.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "check.py").write_text(script, encoding="utf-8")
    await facts(hub, 3)
    doc = await hub.audit.export()
    (tmp_path / "good.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    doc["entries"][1]["target"] = "000.00.77.H23"
    (tmp_path / "bad.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(tmp_path / "check.py"), str(tmp_path / name)],
                              capture_output=True, text=True, timeout=60, check=False)

    good, bad = await asyncio.gather(asyncio.to_thread(run, "good.json"), asyncio.to_thread(run, "bad.json"))
    assert good.returncode == 0 and "toàn vẹn" in good.stdout, good.stderr
    assert bad.returncode != 0 and "seq 2" in bad.stderr


async def test_secret_changes_are_recorded_by_name_never_by_value(hub: Hub) -> None:
    await hub.secrets.set("sftp-h23", "mat-khau-rat-bi-mat")
    assert await hub.secrets.add("sftp-h23", "khac") is False  # not created: nothing recorded
    await hub.secrets.set("sftp-h23", "mat-khau-moi")
    assert await hub.secrets.delete("sftp-h23")
    await hub.audit.chain()
    mine = [r for r in await rows(hub) if r.target == "sftp-h23"]
    assert [r.action for r in mine] == ["secret.set", "secret.set", "secret.deleted"]
    assert not any("mat-khau" in json.dumps(r.detail or {}) for r in mine)


async def test_service_changes_and_grants_are_recorded(hub: Hub) -> None:
    """Who may call a unit's proxied service is a security fact: registering, granting, revoking,
    suspending and removing are each recorded, with the operator who did it."""
    owner, caller, other = U.format(1), U.format(2), U.format(3)
    for unit in (owner, caller, other):
        await hub.directory.add_unit(unit, f"Đơn vị {unit}")
    with audit.acting_as("operator:lan", "cli"):
        await hub.services.add("tra-cuu", owner, "https://so-a.example/api")
        assert await hub.services.grant("tra-cuu", caller)
        assert await hub.services.grant("tra-cuu", caller) is False  # already granted: nothing recorded
        assert await hub.services.grant("tra-cuu", other)
        assert await hub.services.revoke("tra-cuu", caller)
        assert await hub.services.revoke("tra-cuu", caller) is False  # nothing to revoke: nothing recorded
        await hub.services.set_status("tra-cuu", "suspended")
        await hub.services.remove("tra-cuu")
    await hub.audit.chain()
    mine = [r for r in await rows(hub) if r.target == "tra-cuu"]
    assert [(r.action, r.unit_id) for r in mine] == [
        ("service.added", owner), ("service.granted", caller), ("service.granted", other),
        ("service.revoked", caller), ("service.status_changed", None), ("service.removed", None)]
    assert {(r.actor, r.address) for r in mine} == {("operator:lan", "cli")}
    assert mine[4].detail == {"status": "suspended"}
    assert mine[5].detail == {"grants": [other]}  # who lost access with the service
    assert (await hub.audit.verify()).ok


def test_service_grant_from_the_cli_is_recorded_with_the_operator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in base_env(tmp_path / "var").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LGSP_OPERATOR", "ngoc")
    assert main(["unit", "add", U.format(1), "Sở A"]) == 0
    assert main(["unit", "add", U.format(2), "Sở B"]) == 0
    assert main(["service", "add", "tra-cuu", "--unit", U.format(1), "--url", "https://so-a.example/api"]) == 0
    assert main(["service", "grant", "tra-cuu", U.format(2)]) == 0
    assert main(["service", "revoke", "tra-cuu", U.format(2)]) == 0
    capsys.readouterr()

    async def recorded() -> list[tuple[str, str | None, str | None, str | None]]:
        async with Hub(load_config(None, env=base_env(tmp_path / "var"))) as hub:
            await hub.audit.chain()
            return [(r.action, r.unit_id, r.actor, r.address) for r in await rows(hub) if r.target == "tra-cuu"]

    assert asyncio.run(recorded()) == [("service.added", U.format(1), "ngoc", "cli"),
                                       ("service.granted", U.format(2), "ngoc", "cli"),
                                       ("service.revoked", U.format(2), "ngoc", "cli")]


async def test_units_from_another_exchanges_directory_are_recorded(hub: Hub) -> None:
    """The national directory sync adds units, suspends and reactivates them and moves them in the
    tree (which `under:` policy rules follow): each is recorded, by the hub, as from the sync."""
    from lgsp.core.directory import ZoneEntry

    ministry, department = "000.00.00.G01", "000.00.01.G01"
    await hub.directory.sync_zone("national", [ZoneEntry(ministry, "Bộ"), ZoneEntry(department, "Vụ")])
    await hub.directory.sync_zone("national", [ZoneEntry(ministry, "Bộ"),
                                               ZoneEntry(department, "Vụ", parent_id=ministry, deleted=True)])
    await hub.directory.sync_zone("national", [ZoneEntry(ministry, "Bộ (tên mới)"),
                                               ZoneEntry(department, "Vụ", parent_id=ministry)])
    await hub.audit.chain()
    got = [(r.action, r.target, r.detail, r.actor) for r in await rows(hub)]
    assert got == [
        ("unit.added", ministry, {"name": "Bộ", "zone": "national", "via": "zone sync"}, "hub"),
        ("unit.added", department, {"name": "Vụ", "zone": "national", "via": "zone sync"}, "hub"),
        ("unit.status_changed", department, {"status": "suspended", "via": "zone sync"}, "hub"),
        ("unit.parent_changed", department, {"parent": ministry, "via": "zone sync"}, "hub"),
        ("unit.status_changed", department, {"status": "active", "via": "zone sync"}, "hub"),
    ]  # a new name alone is not a security fact: not recorded
