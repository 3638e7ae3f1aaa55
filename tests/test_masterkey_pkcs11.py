"""The master key file sealed under a key held in a PKCS#11 token: a real SoftHSM2 token made in a
temporary directory, its AES key generated with pkcs11-tool exactly as docs/encryption.md says."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.masterkey import Kek, MasterKey, MasterKeyError, Pkcs11Kek

from .conftest import base_env
from .test_masterkey_rotation import run_cli

MODULE = "/usr/lib/softhsm/libsofthsm2.so"  # Debian's softhsm2 (.ci/run installs it)
PIN = "24681357"

pytestmark = pytest.mark.skipif(not Path(MODULE).exists() or shutil.which("softhsm2-util") is None
                                or shutil.which("pkcs11-tool") is None,
                                reason="SoftHSM2 / OpenSC are not installed (apt-get install softhsm2 opensc)")


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 token `lgsp` with two AES-256 keys, `lgsp-kek` and `other-kek`, and a PIN file.
    One per module: the PKCS#11 library is loaded once per process and reads its config then."""
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "lgsp", "--pin", PIN,
                        "--so-pin", "13572468"], check=True, capture_output=True, timeout=60)
        for label in ("lgsp-kek", "other-kek"):
            subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", "lgsp", "--login", "--pin", PIN,
                            "--keygen", "--key-type", "AES:32", "--label", label],
                           check=True, capture_output=True, timeout=60)
        pin_file = home / "hsm.pin"
        pin_file.write_text(PIN + "\n")
        pin_file.chmod(0o600)
        yield home


def uri(home: Path, key: str = "lgsp-kek", pin: str | None = None) -> str:
    return (f"pkcs11:token=lgsp;object={key}?module-path={MODULE}"
            f"&pin-source={pin or 'file:' + str(home / 'hsm.pin')}")


def test_the_keyring_opens_only_through_the_token(token: Path, tmp_path: Path) -> None:
    kek = Kek.from_setting(uri(token))
    assert isinstance(kek, Pkcs11Kek) and "lgsp-kek" in kek.source and PIN not in repr(kek)
    path = tmp_path / "master.key"
    key = MasterKey.load_or_create(path, kek)
    sealed = key.seal(b"bi mat", "ctx")
    text = path.read_text()
    assert text.startswith("lgsp-master-keyring-kek-v1:") and "lgsp-master-key-v1:" not in text
    assert MasterKey.load(path, Kek.from_setting(uri(token))).unseal(sealed, "ctx") == b"bi mat"
    with pytest.raises(MasterKeyError, match="key-encryption key"):
        MasterKey.load(path)  # the file alone opens nothing
    with pytest.raises(MasterKeyError, match="does not open"):
        MasterKey.load(path, Kek.from_setting(uri(token, "other-kek")))  # another key of the token
    with pytest.raises(MasterKeyError, match="not sealed by a PKCS#11 key"):
        kek.unwrap(b"\x00" * 40)  # e.g. a file sealed under a file: or env: KEK
    # A rotation writes the file again through the token; both keys then open what they sealed.
    key.new_primary()
    assert MasterKey.load(path, kek).unseal(sealed, "ctx") == b"bi mat"
    assert len(MasterKey.load(path, kek).key_ids) == 2


def test_token_errors_are_one_clear_line(token: Path, tmp_path: Path) -> None:
    wrong_pin = tmp_path / "wrong.pin"
    wrong_pin.write_text("00000000")
    wrong_pin.chmod(0o600)
    cases = {
        uri(token, pin=f"file:{wrong_pin}"): "PinIncorrect",
        uri(token, key="no-such-key"): "NoSuchKey",
        uri(token).replace("token=lgsp", "token=khac"): "NoSuchToken",
        uri(token).replace(MODULE, "/no/such/module.so"): "cannot load the PKCS#11 module",
        uri(token, pin="env:LGSP_TEST_NO_PIN"): "LGSP_TEST_NO_PIN",
    }
    for setting, expected in cases.items():
        with pytest.raises(MasterKeyError, match=expected) as err:
            Kek.from_setting(setting, env={})
        assert "\n" not in str(err.value) and PIN not in str(err.value)
    wrong_pin.chmod(0o644)
    with pytest.raises(MasterKeyError, match="readable by other users"):
        Kek.from_setting(uri(token, pin=f"file:{wrong_pin}"))
    with pytest.raises(MasterKeyError, match="pin-value is refused"):
        Kek.from_setting(uri(token) + f"&pin-value={PIN}")
    # The PIN from the environment works as well as from a file.
    assert Kek.from_setting(uri(token, pin="env:LGSP_TEST_PIN"), env={"LGSP_TEST_PIN": PIN}) is not None


async def test_rotate_seals_a_live_hubs_key_file_under_the_token(token: Path, tmp_path: Path) -> None:
    """The operator's path: a hub with a plain key file; set the setting, `lgsp masterkey rotate`
    seals the file under the token's key; the hub then starts only with the token."""
    env = base_env(tmp_path / "var")
    async with Hub(load_config(None, env=env)) as hub:
        await hub.secrets.set("sftp-h23", "mat khau")
        key_path = hub.config.master_key_path
    with_token = env | {"LGSP_SECURITY_MASTER_KEY_KEK": uri(token), "SOFTHSM2_CONF": str(token / "softhsm2.conf")}
    result = await asyncio.to_thread(run_cli, with_token, tmp_path, "masterkey", "rotate")
    assert result.returncode == 0, result.stderr
    assert key_path.read_text().startswith("lgsp-master-keyring-kek-v1:")
    status = await asyncio.to_thread(run_cli, with_token, tmp_path, "masterkey", "status")
    assert status.returncode == 0 and "lgsp-kek" in status.stdout, status.stderr
    async with Hub(load_config(None, env=with_token)) as hub:
        assert await hub.secrets.reveal("sftp-h23") == "mat khau"
    # Without the token's setting (or with a wrong PIN) the hub's commands stop in one line.
    bad = await asyncio.to_thread(run_cli, env, tmp_path, "masterkey", "status")
    assert bad.returncode != 0 and "security.master_key_kek" in bad.stderr and len(bad.stderr.splitlines()) == 1
    wrong = with_token | {"LGSP_SECURITY_MASTER_KEY_KEK": uri(token, pin="env:LGSP_TEST_PIN"),
                          "LGSP_TEST_PIN": "11111111"}
    bad = await asyncio.to_thread(run_cli, wrong, tmp_path, "masterkey", "status")
    assert bad.returncode != 0 and "PinIncorrect" in bad.stderr and len(bad.stderr.splitlines()) == 1
