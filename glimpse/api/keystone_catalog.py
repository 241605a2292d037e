"""The caller's service catalog, asked of Keystone with the caller's own token
(``GET /v3/auth/catalog``): where glance-download finds another region's image service.

glimpse validates tokens without their catalog (``nocatalog``), so the catalog is read only
when an import needs it. The token goes to Keystone alone, in a header, and is never logged.
"""

from __future__ import annotations

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session

from glimpse.domain.glance_download import endpoint_in
from glimpse.errors import Invalid, Unavailable


class KeystoneCatalog:
    def __init__(self, identity_url: str, timeout: float) -> None:
        """``identity_url``: Keystone's v3 API root."""
        self._url = identity_url.rstrip("/") + "/auth/catalog"
        self._session = ks_session.Session(timeout=timeout)

    def image_endpoint(self, token: str, region: str, interface: str) -> str | None:
        try:
            answer = self._session.get(self._url, headers={"X-Auth-Token": token},
                                       raise_exc=False, log=False, authenticated=False)
        except ks_exceptions.ClientException as exc:
            raise Unavailable(f"Keystone did not answer for the service catalog: "
                              f"{type(exc).__name__}") from None
        if answer.status_code in (401, 403, 404):
            raise Invalid(f"Keystone refused the service catalog of your token "
                          f"(HTTP {answer.status_code}).")
        if answer.status_code != 200:
            raise Unavailable(f"Keystone answered the service catalog request with HTTP "
                              f"{answer.status_code}.")
        try:
            catalog = answer.json().get("catalog")
        except (ValueError, AttributeError):
            raise Unavailable("Keystone answered the service catalog request with a body "
                              "that is not a catalog.") from None
        return endpoint_in(catalog, region, interface)
