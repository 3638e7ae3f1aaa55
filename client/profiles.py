"""Where the CLI finds credentials: flags, then LGSP_* environment variables, then a profile file.

The profile file (default ~/.config/lgsp/profiles.yaml, mode 0600) holds named profiles:

    default:
      url: http://127.0.0.1:8080
      access_key: AK...
      algorithm: HMAC-SHA256
      secret_key: ...            # or private_key_file: /path/to/unit.pem for RSA-SHA256
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lgsp.client.client import ALGORITHMS, Credentials, load_private_key
from lgsp.core.i18n import Text


class ProfileError(Exception):
    pass


def profiles_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("LGSP_PROFILES_FILE"):
        return Path(env["LGSP_PROFILES_FILE"])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "lgsp" / "profiles.yaml"


def read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ProfileError(Text("{path} holds secrets but other users can read it; run: chmod 600 {path}", path=path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ProfileError(Text("{path}: not a readable YAML file ({reason})", path=path,
                                reason=" ".join(str(exc).split())[:200])) from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ProfileError(Text("{path}: expected a mapping of profile name to settings", path=path))
    return data


def save_profile(path: Path, name: str, values: dict[str, Any]) -> None:
    """Add or replace one profile, keeping the file private (0600) at every moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profiles = read_profiles(path)
    profiles[name] = {k: v for k, v in values.items() if v is not None}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(profiles, fh, allow_unicode=True, sort_keys=True)
    os.replace(tmp, path)


def resolve_credentials(*, url: str | None = None, access_key: str | None = None, secret: str | None = None,
                        private_key_file: str | None = None, algorithm: str | None = None,
                        profile: str | None = None, env: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if env is None else env
    name = profile or env.get("LGSP_PROFILE") or "default"
    prof = read_profiles(profiles_path(env)).get(name, {})
    if profile and not prof:
        raise ProfileError(Text("no profile named {name!r} in {path}", name=profile, path=profiles_path(env)))

    def pick(flag: str | None, env_name: str, key: str) -> str | None:
        return flag or env.get(env_name) or (str(prof[key]) if prof.get(key) is not None else None)

    url = pick(url, "LGSP_URL", "url") or "http://127.0.0.1:8080"
    access_key = pick(access_key, "LGSP_ACCESS_KEY", "access_key")
    secret = pick(secret, "LGSP_SECRET_KEY", "secret_key")
    key_file = pick(private_key_file, "LGSP_PRIVATE_KEY_FILE", "private_key_file")
    algorithm = pick(algorithm, "LGSP_ALGORITHM", "algorithm") or ("RSA-SHA256" if key_file and not secret
                                                                    else "HMAC-SHA256")
    if not access_key:
        raise ProfileError(Text("no access key: pass --access-key, set LGSP_ACCESS_KEY, or add a profile to {path}",
                                path=profiles_path(env)))
    alg = ALGORITHMS.get(algorithm)
    if alg is None:
        raise ProfileError(Text("unknown algorithm {name!r}: use one of {known}", name=algorithm,
                                known=", ".join(sorted(ALGORITHMS))))
    if alg.shared_secret and not secret:
        raise ProfileError(Text("{name} needs the secret key: pass --secret-key, set LGSP_SECRET_KEY, or add "
                                "secret_key to the profile", name=algorithm))
    if not alg.shared_secret and not key_file:
        raise ProfileError(Text("{name} needs the unit's private key: pass --private-key-file, set "
                                "LGSP_PRIVATE_KEY_FILE, or add private_key_file to the profile", name=algorithm))
    private_pem = _private_key(key_file) if key_file and not alg.shared_secret else None
    return Credentials(url=url, access_key=access_key, algorithm=algorithm, secret=secret,
                       private_key_pem=private_pem)


def _private_key(path: str) -> str:
    """The PEM text of an unencrypted private key file, checked now rather than at the first call."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        pem = load_private_key(path)
        load_pem_private_key(pem.encode("ascii"), password=None)
    except FileNotFoundError as exc:
        raise ProfileError(Text("{path}: no such private key file", path=path)) from exc
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ProfileError(Text("{path}: not an unencrypted PEM private key", path=path)) from exc
    return pem
