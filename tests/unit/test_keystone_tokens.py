"""How glimpse reads Keystone's answers to its validations (IdentityServer), with keystoneauth's
session stood in for: which answers are a token, no token, or an outage."""

from __future__ import annotations

from typing import Any

import pytest
from keystoneauth1 import exceptions as ks_exceptions

from glimpse.api.keystone_tokens import IdentityServer, KeystoneDown, ServiceCredentials

SECRET = "S3cret-never-shown"


class Answer:
    def __init__(self, status: int, body: Any = None) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        if isinstance(self._body, Exception):
            raise self._body
        return self._body


class Session:
    def __init__(self, *answers: Answer | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def get(self, url: str, **options: Any) -> Answer:
        self.calls.append({"url": url, **options})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Auth:
    def __init__(self) -> None:
        self.invalidated = 0

    def invalidate(self) -> bool:
        self.invalidated += 1
        return True


def server(*answers: Answer | Exception) -> tuple[IdentityServer, Session, Auth]:
    found = IdentityServer(ServiceCredentials("http://k:5000", "glimpse", SECRET), timeout=1)
    session, auth = Session(*answers), Auth()
    found._session = session  # type: ignore[assignment]
    found._auth = auth  # type: ignore[assignment]
    return found, session, auth


def test_a_valid_token_is_its_data_and_the_call_is_keystones() -> None:
    found, session, _ = server(Answer(200, {"token": {"user": {"id": "u"}}}))
    assert found.validate("tok") == {"user": {"id": "u"}}
    call = session.calls[0]
    assert call["url"] == "http://k:5000/v3/auth/tokens"
    assert call["headers"]["X-Subject-Token"] == "tok"
    assert "OpenStack-Identity-Access-Rules" in call["headers"]
    assert call["params"] == {"nocatalog": "1"}
    assert call["log"] is False


def test_allow_expired_is_asked_for() -> None:
    found, session, _ = server(Answer(200, {"token": {}}))
    found.validate("tok", allow_expired=True)
    assert session.calls[0]["params"] == {"nocatalog": "1", "allow_expired": "1"}


def test_404_is_no_token() -> None:
    found, _, _ = server(Answer(404))
    assert found.validate("tok") is None


def test_401_to_glimpses_own_token_logs_in_again_once() -> None:
    found, session, auth = server(Answer(401), Answer(200, {"token": {"a": 1}}))
    assert found.validate("tok") == {"a": 1}
    assert auth.invalidated == 1 and len(session.calls) == 2
    found, _, _ = server(Answer(401), Answer(401))
    with pytest.raises(KeystoneDown, match="refuses glimpse's own token"):
        found.validate("tok")


@pytest.mark.parametrize(("answer", "problem"), [
    (Answer(403), "service role"),
    (Answer(500), "HTTP 500"),
    (Answer(503), "HTTP 503"),
    (Answer(200, ValueError("not json")), "not a token"),
    (Answer(200, {"nothing": 1}), "not a token"),
    (Answer(200, {"token": "a string"}), "not a token"),
    (ks_exceptions.ConnectFailure("refused"), "did not answer"),
    (ks_exceptions.ConnectTimeout("slow"), "did not answer"),
    (ks_exceptions.Unauthorized("bad password"), "refuses glimpse's service credentials"),
])
def test_outages(answer: Answer | Exception, problem: str) -> None:
    found, _, _ = server(answer)
    with pytest.raises(KeystoneDown, match=problem) as caught:
        found.validate("tok")
    assert SECRET not in str(caught.value)


def test_credentials_hide_the_password() -> None:
    credentials = ServiceCredentials("http://k:5000/v3/", "glimpse", SECRET)
    assert SECRET not in repr(credentials) and SECRET not in credentials.describe()
    assert credentials.identity_url == "http://k:5000/v3"
