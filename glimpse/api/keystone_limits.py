"""Keystone's unified limits as a LimitSource (domain/quotas.py): the limits of glimpse's
resources for a project, read with glimpse's service user scoped to the system (Keystone shows
other projects' limits only to system-scoped callers; provisioning gives it system ``reader``).

As oslo.limit reads them: a project limit overrides the registered (default) limit, a resource
with neither is 0 (everything is refused), and -1 is unlimited. Only the ``flat`` enforcement
model exists (oslo.limit implements no other): any other is refused at start. Sizes are
Glance's MiB in Keystone and bytes in the domain.

Answers are cached per project for ``cache_time`` seconds: Glance reads the model, the endpoint
and both limit lists on every check. Keystone out of reach, or refusing, is Unavailable (a 503
with Retry-After), never a pass. Blocking: called from the worker thread of a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from glimpse.api.keystone_tokens import ServiceCredentials
from glimpse.domain.quotas import RESOURCES, SIZE_RESOURCES, MiB, ProjectLimits
from glimpse.errors import Invalid, Unavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
UNAVAILABLE_MESSAGE = "The quota service (Keystone) is unavailable; try again shortly."
CACHE_ENTRIES = 10000


class KeystoneLimits:
    unified = True

    def __init__(
        self, credentials: ServiceCredentials, *, timeout: float, cache_time: float,
        endpoint_id: str = "", service_type: str = "image", region: str = "",
        interface: str = "public", clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self._auth = v3.Password(
            auth_url=credentials.identity_url, username=credentials.username,
            password=credentials.password, user_domain_name=credentials.user_domain_name,
            system_scope="all",
        )
        self._session = ks_session.Session(auth=self._auth, timeout=timeout)
        self._url = credentials.identity_url
        self._cache_time = cache_time
        self._endpoint_id = endpoint_id
        self._service_type = service_type
        self._region = region
        self._interface = interface
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, ProjectLimits]] = OrderedDict()
        # (service id, region id) of glimpse's endpoint, found once.
        self._target: tuple[str, str | None] | None = None

    # -- the port ----------------------------------------------------------------------------

    def limits(self, project: str | None) -> ProjectLimits:
        if project is None:
            # No project (an anonymous caller): nothing of Keystone's applies; as a project
            # without limits, everything is refused.
            return dict.fromkeys(RESOURCES, 0)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(project)
            if hit is not None and hit[0] > now:
                return hit[1]
        try:
            found = self._read(project)
        except Invalid as exc:
            # A configuration error found after start (Keystone was down then): refused.
            log.error("unified limits unusable: %s", exc.message)
            raise Unavailable(UNAVAILABLE_MESSAGE, retry_after=RETRY_AFTER_SECONDS) from None
        if self._cache_time > 0:
            with self._lock:
                self._cache[project] = (now + self._cache_time, found)
                self._cache.move_to_end(project)
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return found

    def check(self) -> None:
        """The start-up check: the enforcement model is flat, glimpse's endpoint is found,
        and its service user may read limits. Invalid for a configuration error; Unavailable
        when Keystone does not answer (the server starts and answers 503 until it does)."""
        self._resolve()
        self._get("/registered_limits", self._target_query())

    # -- reading -----------------------------------------------------------------------------

    def _read(self, project: str) -> ProjectLimits:
        self._resolve()
        query = self._target_query()
        registered = self._get("/registered_limits", query)["registered_limits"]
        own = self._get("/limits", {**query, "project_id": project})["limits"]
        values = {str(entry["resource_name"]): int(entry["default_limit"])
                  for entry in registered}
        # A project's own limit overrides the registered one (domain limits are for the
        # hierarchical model, which glimpse refuses).
        values.update({str(entry["resource_name"]): int(entry["resource_limit"])
                       for entry in own if entry.get("project_id") == project})
        limits: dict[str, int | None] = {}
        for name in RESOURCES:
            value = values.get(name, 0)  # missing: 0, as oslo.limit
            if value < 0:
                limits[name] = None  # -1: unlimited
            else:
                limits[name] = value * MiB if name in SIZE_RESOURCES else value
        log.debug("unified limits of project %s: %s", project, limits)
        return limits

    def _resolve(self) -> None:
        """The model (flat only) and glimpse's service and region, found once."""
        if self._target is not None:
            return
        model = self._get("/limits/model", {}).get("model", {}).get("name")
        if model != "flat":
            raise Invalid(f"Keystone's limit enforcement model is {model!r}: glimpse "
                          "enforces only the flat model (as oslo.limit)")
        if self._endpoint_id:
            found = self._get(f"/endpoints/{self._endpoint_id}", {}, missing_ok=True)
            if found is None:
                raise Invalid(f"Keystone has no endpoint {self._endpoint_id} "
                              "(keystone_limits_endpoint_id)")
            endpoint = found["endpoint"]
        else:
            services = self._get("/services", {"type": self._service_type})["services"]
            if len(services) != 1:
                raise Invalid(f"Keystone's catalog has {len(services)} services of type "
                              f"{self._service_type!r}: set keystone_limits_endpoint_id")
            query = {"service_id": services[0]["id"], "interface": self._interface}
            if self._region:
                query["region_id"] = self._region
            endpoints = self._get("/endpoints", query)["endpoints"]
            if len(endpoints) != 1:
                raise Invalid(f"Keystone's catalog has {len(endpoints)} {self._interface} "
                              f"endpoints of the {self._service_type!r} service"
                              f"{' in region ' + self._region if self._region else ''}: "
                              "set keystone_limits_endpoint_id or keystone_limits_region")
            endpoint = endpoints[0]
        self._target = (str(endpoint["service_id"]), endpoint.get("region_id"))
        log.info("unified limits: flat model, service %s, region %s", *self._target)

    def _target_query(self) -> dict[str, str]:
        assert self._target is not None, "resolved first"
        service, region = self._target
        return {"service_id": service, **({"region_id": region} if region else {})}

    def _get(self, path: str, params: dict[str, str], missing_ok: bool = False) -> Any:
        for attempt in (1, 2):
            try:
                answer = self._session.get(self._url + path, params=params, raise_exc=False,
                                           log=False)
            except ks_exceptions.Unauthorized:
                raise Invalid(f"Keystone refuses glimpse's service credentials scoped to the "
                              f"system ({self.credentials.username!r}): give it the system "
                              f"reader role (openstack role add --user "
                              f"{self.credentials.username} --user-domain "
                              f"{self.credentials.user_domain_name} --system all reader)"
                              ) from None
            except ks_exceptions.ClientException as exc:
                log.warning("Keystone did not answer a limits request: %s",
                            str(exc) or type(exc).__name__)
                raise Unavailable(UNAVAILABLE_MESSAGE,
                                  retry_after=RETRY_AFTER_SECONDS) from None
            status = answer.status_code
            if status == 200:
                try:
                    return answer.json()
                except ValueError:
                    break
            if status == 404 and missing_ok:
                return None
            if status == 401 and attempt == 1:
                self._auth.invalidate()  # its token expired or was revoked: a new one, once
                continue
            if status == 403:
                raise Invalid(f"Keystone does not let glimpse's service user read {path}: "
                              f"give it the system reader role (openstack role add --user "
                              f"{self.credentials.username} --user-domain "
                              f"{self.credentials.user_domain_name} --system all reader)")
            log.warning("Keystone answered GET %s with HTTP %s", path, status)
            break
        raise Unavailable(UNAVAILABLE_MESSAGE, retry_after=RETRY_AFTER_SECONDS)
