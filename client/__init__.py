"""The Python client of the hub (and the signing plugin for zeep, when SOAP lands)."""

from lgsp.client.client import Credentials, LgspClient, LgspError, file_sha256
from lgsp.client.profiles import ProfileError, resolve_credentials

__all__ = ["Credentials", "LgspClient", "LgspError", "ProfileError", "file_sha256", "resolve_credentials"]
