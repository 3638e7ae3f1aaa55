"""The communication policy: each rule kind, precedence, the default, the record of changes, the
refusal at session and at packet creation over REST, and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lgsp.cli.main import main
from lgsp.client import LgspError
from lgsp.core.config import ConfigError, load_config
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub
from lgsp.core.policy import Policy
from lgsp.core.store.tables import audit_log, packets, policy_rules

from .conftest import MakeActor, base_env
from .test_auth import assert_problem

P = "000.00.00.H23"    # the province's root unit
S1 = "000.00.01.H23"   # a department under P
S2 = "000.00.02.H23"   # another department under P
C1 = "000.01.01.H23"   # a commune under S1
N = "000.00.00.G01"    # a ministry in the national zone
OP = "operator:test"


async def tree(hub: Hub) -> dict[str, str]:
    """P with S1 (and C1 below it) and S2; N in the national zone. Returns application ids by unit."""
    await hub.directory.add_unit(P, "UBND tỉnh")
    await hub.directory.add_unit(S1, "Sở Một", parent_id=P)
    await hub.directory.add_unit(S2, "Sở Hai", parent_id=P)
    await hub.directory.add_unit(C1, "Xã Một", parent_id=S1)
    await hub.directory.add_unit(N, "Bộ", zone="national")
    apps = {}
    for unit in (P, S1, S2, C1, N):
        apps[unit] = (await hub.directory.add_application(unit, "vbql")).id
    return apps


async def allowed(policy: Policy, source: str, dest: str, data_type: str = "binary", app: str | None = None) -> bool:
    return (await policy.decide(source, app, dest, data_type)).allowed


# -- each rule kind ------------------------------------------------------------------------------

async def test_unit_rules(hub: Hub) -> None:
    await tree(hub)
    assert await allowed(hub.policy, S1, S2)  # the default
    await hub.policy.add("deny", S1, S2, by=OP)
    assert not await allowed(hub.policy, S1, S2)
    assert await allowed(hub.policy, S2, S1)  # a rule has a direction
    assert await allowed(hub.policy, S1, C1)


async def test_application_rules_beat_unit_rules(hub: Hub) -> None:
    apps = await tree(hub)
    other = (await hub.directory.add_application(P, "other")).id
    await hub.policy.add("deny", P, N, by=OP)
    await hub.policy.add("allow", f"app:{P}/vbql", N, by=OP)
    assert await allowed(hub.policy, P, N, app=apps[P])
    assert not await allowed(hub.policy, P, N, app=other)
    assert not await allowed(hub.policy, P, N, app=None)  # an adapter submitting on the unit's behalf


async def test_parent_rules_cover_the_subtree_and_the_nearer_ancestor_decides(hub: Hub) -> None:
    await tree(hub)
    await hub.policy.add("deny", f"under:{P}", S2, by=OP)
    assert not await allowed(hub.policy, P, S2)
    assert not await allowed(hub.policy, S1, S2)
    assert not await allowed(hub.policy, C1, S2)  # two levels down
    assert await allowed(hub.policy, N, S2)  # not in the tree under P
    await hub.policy.add("allow", f"under:{S1}", S2, by=OP)  # nearer to C1 than P is
    assert await allowed(hub.policy, C1, S2)
    assert await allowed(hub.policy, S1, S2)
    assert not await allowed(hub.policy, P, S2)
    # Destinations by parent too.
    await hub.policy.add("deny", N, f"under:{S1}", by=OP)
    assert not await allowed(hub.policy, N, C1) and not await allowed(hub.policy, N, S1)
    assert await allowed(hub.policy, N, S2)


async def test_zone_rules(hub: Hub) -> None:
    await tree(hub)
    await hub.policy.add("deny", "*", "zone:national", by=OP)
    assert not await allowed(hub.policy, S1, N)
    assert await allowed(hub.policy, S1, S2)
    await hub.policy.add("allow", "zone:national", "zone:local", by=OP)
    await hub.policy.add("deny", "*", "zone:local", by=OP)
    assert await allowed(hub.policy, N, S1)  # zone (source) is more specific than any
    assert not await allowed(hub.policy, S2, S1)


async def test_data_type_rules(hub: Hub) -> None:
    await tree(hub)
    await hub.policy.add("deny", S1, S2, data_type="edxml", by=OP)
    assert not await allowed(hub.policy, S1, S2, "edxml")
    assert await allowed(hub.policy, S1, S2, "binary")
    # A session is allowed when some data type may pass.
    await hub.policy.check_session(S1, None, S2)
    await hub.policy.add("deny", S1, S2, by=OP)
    await hub.policy.add("allow", S1, S2, data_type="pdf", by=OP)
    assert await allowed(hub.policy, S1, S2, "pdf")
    assert not await allowed(hub.policy, S1, S2, "binary")
    await hub.policy.check_session(S1, None, S2)  # pdf may pass
    rule = next(r for r in await hub.policy.rules() if r.data_type == "pdf")
    await hub.policy.remove(rule.id or 0, by=OP)
    with pytest.raises(Problem) as err:
        await hub.policy.check_session(S1, None, S2)
    assert err.value.code == "auth.not_permitted" and err.value.status == 403


async def test_at_equal_specificity_deny_wins(hub: Hub) -> None:
    await tree(hub)
    await hub.policy.add("allow", S1, S2, by=OP)
    await hub.policy.add("deny", S1, S2, by=OP)
    decision = await hub.policy.decide(S1, None, S2, "binary")
    assert not decision.allowed and decision.rule is not None and decision.rule.action == "deny"
    assert [r.action for r in decision.matching] == ["deny", "allow"]


async def test_default_and_rules_from_yaml(tmp_path: Path) -> None:
    env = base_env(tmp_path / "var", LGSP_POLICY_DEFAULT="deny")
    cfg = load_config(None, env=env)
    cfg = cfg.replace(policy={"rules": [{"action": "allow", "source": "zone:local", "destination": "zone:local"}]})
    async with Hub(cfg) as hub:
        await tree(hub)
        assert await allowed(hub.policy, S1, S2)
        assert not await allowed(hub.policy, S1, N)  # the default
        decision = await hub.policy.decide(S1, None, N, "binary")
        assert decision.rule is None and decision.reason() == "the default (deny)"
        listed = await hub.policy.rules()
        assert [(r.origin, r.id) for r in listed] == [("config", None)]


async def test_the_shipped_policy_keeps_the_national_zone_to_granted_applications(tmp_path: Path) -> None:
    """config/lgsp.yaml as shipped: units of the province reach each other; the national zone only
    through an application (or a unit) granted it; the national zone still reaches the province."""
    shipped = Path(__file__).resolve().parent.parent / "config" / "lgsp.yaml"
    async with Hub(load_config(shipped, env=base_env(tmp_path / "var"))) as hub:
        apps = await tree(hub)
        other_app = (await hub.directory.add_application(S1, "khac")).id
        assert await allowed(hub.policy, S1, S2) and await allowed(hub.policy, C1, P)
        assert await allowed(hub.policy, N, S1)  # the national zone writes to the province
        assert not await allowed(hub.policy, S1, N, app=apps[S1])
        assert not await allowed(hub.policy, P, N)
        await hub.policy.add("allow", f"app:{S1}/vbql", "zone:national", by=OP, note="QĐ cấp quyền")
        assert await allowed(hub.policy, S1, N, app=apps[S1])  # the granted application
        assert not await allowed(hub.policy, S1, N, app=other_app)  # not another one of the same unit
        assert not await allowed(hub.policy, S1, N)  # nor the unit's packets without an application
        decision = await hub.policy.decide(S1, other_app, N, "binary")
        assert decision.rule is not None and decision.rule.origin == "config"
    # An existing deployment that wants the old behaviour writes `rules: []`.
    opened = load_config(shipped, env=base_env(tmp_path / "var")).replace(policy={"rules": []})
    async with Hub(opened) as hub:
        assert await allowed(hub.policy, S1, N)


def test_bad_yaml_rules_are_reported_at_their_key(tmp_path: Path) -> None:
    path = tmp_path / "lgsp.yaml"
    path.write_text("policy:\n  default: maybe\n  rules:\n    - {action: allow, source: '*', destination: 'zone:'}\n"
                    "    - {action: allow, source: '*'}\n    - {action: permit, source: '*', destination: '*'}\n"
                    "    - {action: deny, source: '*', destination: 'app:X/y'}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = "\n".join(str(i) for i in err.value.issues)
    assert "policy.default" in text
    # Rules are judged once the section's own keys are fine: fix the default and look again.
    path.write_text(path.read_text(encoding="utf-8").replace("maybe", "deny"), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    paths = [i.path for i in err.value.issues]
    assert paths == ["policy.rules[0].destination", "policy.rules[1].destination", "policy.rules[2].action",
                     "policy.rules[3].destination"]


async def test_every_change_is_kept_with_who_made_it(hub: Hub) -> None:
    await tree(hub)
    rule = await hub.policy.add("deny", S1, S2, by="operator:nguyen.van.a", note="thử")
    await hub.policy.remove(rule.id or 0, by="operator:tran.thi.b")
    assert await allowed(hub.policy, S1, S2)
    [kept] = [r for r in await hub.policy.rules(include_removed=True) if r.id == rule.id]
    assert (kept.created_by, kept.removed_by, kept.note) == ("operator:nguyen.van.a", "operator:tran.thi.b", "thử")
    assert kept.removed_at is not None and kept.created_at is not None
    assert [r for r in await hub.policy.rules() if r.origin == "store"] == []
    async with hub.db.read() as conn:
        rows = (await conn.execute(select(audit_log.c.action, audit_log.c.actor, audit_log.c.target)
                                   .where(audit_log.c.action.like("policy.%")).order_by(audit_log.c.id))).all()
    assert [tuple(r) for r in rows] == [("policy.rule_added", "operator:nguyen.van.a", f"rule:{rule.id}"),
                                        ("policy.rule_removed", "operator:tran.thi.b", f"rule:{rule.id}")]
    with pytest.raises(Problem) as err:
        await hub.policy.remove(rule.id or 0, by=OP)
    assert err.value.code == "not_found"
    for bad in ("", " ", "x" * 65, "a\nb"):
        with pytest.raises(Problem):
            await hub.policy.add("deny", S1, S2, by=bad)
    with pytest.raises(Problem) as err:
        await hub.policy.add("allow", f"app:{S1}/nope", S2, by=OP)
    assert err.value.code == "not_found"
    for source, dest in (("app:X", S2), ("zone:", S2), (S1, f"app:{S1}/vbql"), ("bad id", S2), ("under:", S2)):
        with pytest.raises(Problem) as err:
            await hub.policy.add("allow", source, dest, by=OP)
        assert err.value.code == "request.invalid"


async def test_a_change_from_another_process_holds_within_the_cache_time(hub: Hub) -> None:
    await tree(hub)
    hub.policy.cache_seconds = 3600
    assert await allowed(hub.policy, S1, S2)
    async with hub.db.write() as conn:  # as the CLI would, from another process
        await conn.execute(policy_rules.insert().values(action="deny", source=f"unit:{S1}", destination=f"unit:{S2}",
                                                        created_at=hub.policy.clock(), created_by=OP))
    assert await allowed(hub.policy, S1, S2)  # still cached
    hub.policy.cache_seconds = 0
    assert not await allowed(hub.policy, S1, S2)


# -- enforcement over REST ------------------------------------------------------------------------

async def test_refused_session_and_packet_over_rest(hub: Hub, make_actor: MakeActor) -> None:
    await tree(hub)
    a = await make_actor(S1, existing=True)
    await make_actor(S2, existing=True)
    b = await make_actor(C1, existing=True)
    await hub.policy.add("deny", S1, S2, by=OP)

    status, h, body = await a.raw("POST", "/v1/sessions", json.dumps({"target": S2}).encode())
    problem = assert_problem(status, h, body, 403, "auth.not_permitted")
    assert "chính sách" in problem["detail"] and "#" not in problem["detail"]  # the rule itself stays private
    assert (await a.client.open_session(C1))["target"] == C1

    data = b"cong van"
    with pytest.raises(LgspError) as err:
        await a.client.create_packet([C1, S2], subject="x", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert (err.value.status, err.value.code) == (403, "auth.not_permitted")
    assert err.value.body["refused"] == [S2]
    async with hub.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(packets)) == 0  # nothing was created
    # The other destination alone is fine, and the application is kept with the packet.
    sent = await a.client.send(data, [C1], subject="x")
    async with hub.db.read() as conn:
        assert await conn.scalar(select(packets.c.source_application).where(packets.c.id == sent)) \
            == a.key.application_id
    assert len(await b.client.inbox()) == 1


async def test_refusal_reveals_nothing_beyond_the_directory(hub: Hub, make_actor: MakeActor) -> None:
    """What does not exist is refused as before (the directory shows that anyway), whatever the
    policy; only an active unit of the directory can get the policy's refusal."""
    await tree(hub)
    a = await make_actor(S1, existing=True)
    await hub.policy.add("deny", S1, "*", by=OP)
    data = b"x"
    with pytest.raises(LgspError) as err:
        await a.client.create_packet(["000.09.09.H23"], subject="x", size=1, sha256=hashlib.sha256(data).hexdigest())
    assert err.value.code == "route.unknown_destination"
    status, h, body = await a.raw("POST", "/v1/sessions", json.dumps({"target": "000.09.09.H23"}).encode())
    assert_problem(status, h, body, 403, "forbidden")  # as before the policy: not a reachable unit
    status, h, body = await a.raw("POST", "/v1/sessions", json.dumps({"target": S2}).encode())
    assert_problem(status, h, body, 403, "auth.not_permitted")


# -- the CLI ----------------------------------------------------------------------------------------

def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_add_list_explain_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def prepare() -> None:
        async with Hub(load_config(None, env=base_env(tmp_path / "var"))) as hub:
            await tree(hub)

    asyncio.run(prepare())
    cfg_file = tmp_path / "lgsp.yaml"
    # No fixed rules: this test builds the national-zone rule itself, from the CLI.
    cfg_file.write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\npolicy:\n  rules: []\n", encoding="utf-8")
    monkeypatch.setenv("LGSP_LANG", "en")
    monkeypatch.setenv("LGSP_OPERATOR", "operator:le.van.c")

    def cli(*argv: str) -> tuple[int, str, str]:
        return run_cli(capsys, *argv, "--config", str(cfg_file))

    code, out, _ = cli("policy", "add", "deny", "*", "zone:national", "--note", "only granted applications")
    assert code == 0 and "#1" in out
    code, out, _ = cli("policy", "add", "allow", f"app:{P}/vbql", "zone:national", "--by", "operator:x")
    assert code == 0 and "#2" in out
    code, out, _ = cli("policy", "explain", P, N)
    assert code == 3 and "REFUSED" in out and "#1" in out
    code, out, _ = cli("policy", "explain", f"{P}/vbql", N, "--data-type", "edxml")
    assert code == 0 and "ALLOWED" in out and "#2" in out and "#1" in out  # the other matching rule too
    code, out, _ = cli("policy", "list", "--json")
    listed = json.loads(out)
    assert listed["default"] == "allow"
    assert [(r["id"], r["created_by"]) for r in listed["rules"]] == [(1, "operator:le.van.c"), (2, "operator:x")]
    code, out, _ = cli("policy", "remove", "2")
    assert code == 0
    code, out, err = cli("policy", "remove", "2")
    assert code == 1 and out == "" and err.count("\n") == 1 and "not_found" in err
    code, out, _ = cli("policy", "list", "--all")
    assert code == 0 and "-operator:le.van.c" in out
    code, out, err = cli("policy", "add", "allow", "bad id", "*")
    assert code == 1 and "request.invalid" in err and err.count("\n") == 1
    code, out, err = cli("policy", "explain", f"{P}/nope", N)
    assert code == 1 and "not_found" in err
