"""Keystone for the benchmark: one project-scoped token, asked for once, and the count of the
token validations (`GET /v3/auth/tokens`) Keystone served, from its access log.

The token is a credential: it is sent to the target as X-Auth-Token and shown nowhere, but as
the first characters of its SHA-256 (how glimpse's own logs name a token)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from apis import BenchError

# A validation in a common-log-format line (gunicorn's access log, as scripts/keystone writes
# it): the request line is quoted.
VALIDATION = re.compile(rb'"GET /v3/auth/tokens[?\s]')


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    project_id: str
    expires_at: str

    def describe(self) -> str:
        return f"<Keystone token sha256:{hashlib.sha256(self.value.encode()).hexdigest()[:8]}>"


@dataclass(frozen=True)
class Account:
    auth_url: str  # the identity v3 root, e.g. http://127.0.0.1:5000/v3
    username: str
    password: str = field(repr=False)
    project_name: str
    domain: str = "Default"  # of the user and of the project


def issue_token(account: Account, timeout: float = 30.0) -> Token:
    """A project-scoped token for ``account`` (password authentication)."""
    url = account.auth_url.rstrip("/")
    url = (url if url.endswith("/v3") else url + "/v3") + "/auth/tokens?nocatalog"
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": account.username, "password": account.password,
            "domain": {"name": account.domain}}}},
        "scope": {"project": {"name": account.project_name,
                              "domain": {"name": account.domain}}},
    }}
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            value = answer.headers.get("X-Subject-Token")
            token = json.load(answer)["token"]
    except urllib.error.HTTPError as exc:
        raise BenchError(f"Keystone at {account.auth_url} refused a token for "
                         f"{account.username!r} in {account.project_name!r}: HTTP {exc.code}"
                         ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise BenchError(f"no token from Keystone at {account.auth_url}: "
                         f"{type(exc).__name__}: {exc}") from None
    if not value:
        raise BenchError(f"Keystone at {account.auth_url} answered without X-Subject-Token")
    return Token(value, str(token["project"]["id"]), str(token["expires_at"]))


class ValidationLog:
    """Counts the token validations a Keystone access log records from now on."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._offset = os.path.getsize(path)
        except OSError as exc:
            raise BenchError(f"cannot read Keystone's access log {path}: {exc}") from None
        self.total = 0

    def count(self) -> int:
        """Validations logged since this object was made (or since the last call, added to
        ``total``); only whole lines are read."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        self.total += sum(1 for line in data[:end].splitlines() if VALIDATION.search(line))
        return self.total
