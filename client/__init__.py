"""The Python client of the hub; `lgsp.client.zeep_signing` signs zeep SOAP calls the same way."""

if __name__ != "lgsp.client":
    raise ImportError(f"import lgsp.client, not {__name__}: a second name would load every module twice")

from lgsp.client.client import Credentials, LgspClient, LgspError, file_sha256
from lgsp.client.profiles import ProfileError, resolve_credentials

__all__ = ["Credentials", "LgspClient", "LgspError", "ProfileError", "file_sha256", "resolve_credentials"]
