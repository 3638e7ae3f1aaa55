"""Console accounts: Argon2 passwords, lockout, TOTP, roles and scopes, sessions, the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select, update

from lgsp.core.accounts import CLI, AccountError, Accounts, Actor, token_hash
from lgsp.core.hub import Hub
from lgsp.core.store.tables import accounts as accounts_table
from lgsp.core.store.tables import console_sessions

PASSWORD = "đúng-mật-khẩu-2026"


@pytest.fixture
async def store(hub: Hub) -> Accounts:
    return Accounts(hub.db, hub.master_key, max_failures=3, lockout_seconds=600)


async def test_passwords_are_stored_as_argon2_and_checked(store: Accounts, hub: Hub) -> None:
    account = await store.add("nguyen.van.a", PASSWORD, "operator", display_name="Nguyễn Văn A")
    async with hub.db.read() as conn:
        stored = await conn.scalar(select(accounts_table.c.password_hash).where(accounts_table.c.id == account.id))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    signed = await store.authenticate("Nguyen.Van.A", PASSWORD, None, address="127.0.0.1")
    assert signed.id == account.id and signed.last_login_at is not None
    with pytest.raises(AccountError) as bad:
        await store.authenticate("nguyen.van.a", PASSWORD + "x", None, address="127.0.0.1")
    assert bad.value.reason == "bad_credentials"
    with pytest.raises(AccountError) as unknown:
        await store.authenticate("nobody", PASSWORD, None, address="127.0.0.1")
    assert unknown.value.reason == "bad_credentials"  # the same answer: usernames are not disclosed


async def test_bad_input_is_refused_with_a_reason(store: Accounts, hub: Hub) -> None:
    for args, reason in ((("ab", PASSWORD, "operator"), "username"),
                         (("ok.name", "short", "operator"), "password_short"),
                         (("ok.name", "ok.name-1234567", "operator"), "password_username"),
                         (("ok.name", PASSWORD, "king"), "role"),
                         (("ok.name", PASSWORD, "unit_admin"), "unit_required")):
        with pytest.raises(AccountError) as exc:
            await store.add(*args)
        assert exc.value.reason == reason, args
    with pytest.raises(AccountError) as exc:
        await store.add("ok.name", PASSWORD, "unit_admin", unit_id="000.00.99.H23")
    assert exc.value.reason == "unit_unknown"
    await store.add("ok.name", PASSWORD, "viewer")
    with pytest.raises(AccountError) as exc:
        await store.add("OK.NAME", PASSWORD, "viewer")
    assert exc.value.reason == "exists"
    assert "Tên đăng nhập" in AccountError("username").message()


async def test_repeated_failures_lock_the_account_even_for_the_right_password(store: Accounts, hub: Hub) -> None:
    await store.add("tran.b", PASSWORD, "viewer")
    for _ in range(3):
        with pytest.raises(AccountError):
            await store.authenticate("tran.b", "wrong-password!", None, address="10.0.0.9")
    with pytest.raises(AccountError) as locked:
        await store.authenticate("tran.b", PASSWORD, None, address="10.0.0.9")
    assert locked.value.reason == "locked"
    await store.unlock("tran.b")
    assert (await store.authenticate("tran.b", PASSWORD, None, address="10.0.0.9")).username == "tran.b"
    trail = await store.audit_entries(actor="tran.b")
    actions = [e.action for e in trail]
    assert actions.count("signin.failed") == 4 and actions[0] == "signin.succeeded"
    assert any(e.detail and e.detail.get("locked") for e in trail)
    assert all(e.address == "10.0.0.9" for e in trail)


async def test_lockout_ends_by_itself(store: Accounts, hub: Hub) -> None:
    await store.add("le.c", PASSWORD, "viewer")
    async with hub.db.write() as conn:
        await conn.execute(update(accounts_table).values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    assert (await store.authenticate("le.c", PASSWORD, None, address=None)).username == "le.c"


async def test_totp_is_required_once_enabled_and_a_code_is_not_reusable(store: Accounts, hub: Hub) -> None:
    account = await store.add("pham.d", PASSWORD, "approver")
    secret = store.new_totp_secret()
    assert store.totp_uri(secret, "pham.d").startswith("otpauth://totp/LGSP:pham.d")
    with pytest.raises(AccountError):
        await store.enable_totp(account.id, secret, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111",
                                actor=Actor("pham.d"))
    # Enabling takes the code of the previous step, so the current one is still fresh for signing in.
    previous = pyotp.TOTP(secret).at(datetime.now(UTC) - timedelta(seconds=30))
    await store.enable_totp(account.id, secret, previous, actor=Actor("pham.d"))
    async with hub.db.read() as conn:
        sealed = await conn.scalar(select(accounts_table.c.totp_sealed))
    assert secret.encode() not in bytes(sealed)
    with pytest.raises(AccountError) as missing:
        await store.authenticate("pham.d", PASSWORD, None, address=None)
    assert missing.value.reason == "totp_required"
    code = pyotp.TOTP(secret).now()
    assert (await store.authenticate("pham.d", PASSWORD, code, address=None)).totp_enabled
    with pytest.raises(AccountError) as replay:
        await store.authenticate("pham.d", PASSWORD, code, address=None)
    assert replay.value.reason == "totp_invalid"
    await store.disable_totp("pham.d", actor=CLI)
    assert not (await store.authenticate("pham.d", PASSWORD, None, address=None)).totp_enabled


async def test_reset_forces_a_change_and_ends_sessions(store: Accounts, hub: Hub) -> None:
    account = await store.add("vo.e", PASSWORD, "viewer")
    token = await store.open_session(account, address="127.0.0.1", absolute_seconds=3600)
    assert await store.session(token, idle_seconds=600) is not None
    temporary = await store.reset_password("vo.e", actor=Actor("admin", "127.0.0.2"))
    assert await store.session(token, idle_seconds=600) is None
    signed = await store.authenticate("vo.e", temporary, None, address=None)
    assert signed.must_change_password
    with pytest.raises(AccountError) as same:
        await store.change_password(account.id, temporary, temporary, actor=Actor("vo.e"))
    assert same.value.reason in ("password_same", "password_short")
    with pytest.raises(AccountError):
        await store.change_password(account.id, "not-the-temporary", "brand-new-password-1", actor=Actor("vo.e"))
    await store.change_password(account.id, temporary, "brand-new-password-1", actor=Actor("vo.e"))
    assert not (await store.authenticate("vo.e", "brand-new-password-1", None, address=None)).must_change_password
    reset = (await store.audit_entries(actor="admin"))[0]
    assert (reset.action, reset.target, reset.address) == ("account.password_reset", "vo.e", "127.0.0.2")


async def test_sessions_end_when_idle_or_past_their_absolute_end(store: Accounts, hub: Hub) -> None:
    account = await store.add("do.f", PASSWORD, "viewer")
    token = await store.open_session(account, address=None, absolute_seconds=3600)
    async with hub.db.read() as conn:
        stored = await conn.scalar(select(console_sessions.c.token_hash))
    assert stored == token_hash(token) and token not in stored
    assert await store.session("not-a-token", idle_seconds=600) is None
    async with hub.db.write() as conn:
        await conn.execute(update(console_sessions).values(last_seen_at=datetime.now(UTC) - timedelta(seconds=601)))
    assert await store.session(token, idle_seconds=600) is None
    token = await store.open_session(account, address=None, absolute_seconds=3600)
    async with hub.db.write() as conn:
        await conn.execute(update(console_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert await store.session(token, idle_seconds=600) is None
    token = await store.open_session(account, address=None, absolute_seconds=3600)
    await store.set_status("do.f", "disabled")
    assert await store.session(token, idle_seconds=600) is None


async def test_the_last_operator_cannot_be_disabled_or_demoted(store: Accounts, hub: Hub) -> None:
    await store.add("root.one", PASSWORD, "operator")
    with pytest.raises(AccountError) as exc:
        await store.set_status("root.one", "disabled")
    assert exc.value.reason == "last_operator"
    with pytest.raises(AccountError):
        await store.set_role("root.one", "viewer")
    await store.add("root.two", PASSWORD, "operator")
    assert (await store.set_role("root.one", "viewer")).role == "viewer"


async def test_a_unit_admin_sees_its_unit_and_children_only_when_allowed(store: Accounts, hub: Hub) -> None:
    await hub.directory.add_unit("000.00.00.H23", "Sở A")
    await hub.directory.add_unit("000.01.00.H23", "Phòng B", parent_id="000.00.00.H23")
    await hub.directory.add_unit("000.01.01.H23", "Tổ C", parent_id="000.01.00.H23")
    await hub.directory.add_unit("000.00.02.H23", "Sở D")
    own = await store.add("admin.a", PASSWORD, "unit_admin", unit_id="000.00.00.H23")
    tree = await store.add("admin.tree", PASSWORD, "unit_admin", unit_id="000.00.00.H23", include_children=True)
    assert await store.unit_scope(own) == ["000.00.00.H23"]
    assert await store.unit_scope(tree) == ["000.00.00.H23", "000.01.00.H23", "000.01.01.H23"]
    assert await store.unit_scope(await store.add("viewer.x", PASSWORD, "viewer")) is None
    created = (await store.audit_entries(unit_ids=["000.00.00.H23"]))
    # The audit log also holds the directory's own facts (unit.added): only the accounts here.
    assert {e.target for e in created if e.action.startswith("account.")} == {"admin.a", "admin.tree"}
