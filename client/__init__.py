"""The Python client of the hub; `lgsp.client.zeep_signing` signs zeep SOAP calls the same way."""

from lgsp.client.client import Credentials, LgspClient, LgspError, file_sha256
from lgsp.client.profiles import ProfileError, resolve_credentials

__all__ = ["Credentials", "LgspClient", "LgspError", "ProfileError", "file_sha256", "resolve_credentials"]
