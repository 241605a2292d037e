"""``/healthcheck``, answered as oslo.middleware's healthcheck application answers it.

Load balancers and monitoring already read that format, so it is kept as it is: HEAD is 204
when healthy, GET 200, both 503 when not; the body is each check's reason, as plain text (one
per line), JSON or HTML by the Accept header (plain text when nothing acceptable is offered).

The plain form runs one check, oslo's ``disable_by_file``: while the operator's file exists
the node answers 503 ``DISABLED BY FILE`` (how a node is drained). It touches neither the
database nor a store, so anyone may call it, unauthenticated in keystone mode too, as often as
a load balancer likes. The detailed form (``?detailed=true``) is oslo's ``detailed`` output
and is for administrators only: it adds a cheap real probe of the database and of each store,
each bounded by a timeout. A failing probe makes it 503 with the reason; reasons and details
name the check and the kind of failure, never a URL, a credential or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import html
import io
import json
import os
import platform
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response

from glimpse.errors import GlimpseError

PATH = "/healthcheck"
OK = "OK"
# oslo's order: on equal quality the first of these wins; nothing acceptable: text/plain.
OFFERS = ("text/plain", "text/html", "application/json")


@dataclasses.dataclass(frozen=True)
class Result:
    available: bool
    reason: str
    details: str = ""
    kind: str = "HealthcheckResult"  # oslo's "class" of a result


class ProbeFailed(Exception):
    """A probe's own account of a failure: ``reason`` is shown as it is."""


@dataclasses.dataclass(frozen=True)
class Probe:
    """One check of the detailed form: ``run`` returns the details of a success, or raises.

    An exception's text is shown only when it is a ``ProbeFailed`` or a glimpse error
    (messages written for clients); of any other, only its class name (a driver's message
    may quote a URL, a host or a user)."""

    name: str  # "database", "store 'file' (filesystem)"
    kind: str  # "DatabaseCheck", "StoreCheck"
    run: Callable[[], str]


class HealthCheck:
    def __init__(self, disable_file: str = "", probes: Sequence[Probe] = (),
                 timeout: float = 3.0) -> None:
        self.disable_file = disable_file
        self.probes = tuple(probes)
        self.timeout = timeout
        # A probe that hangs keeps its thread until it returns; while it does, later checks
        # report it as hanging instead of starting another: at most one thread per probe.
        self._running = {probe.name: threading.Lock() for probe in self.probes}

    async def answer(self, request: Request, detailed: bool) -> Response:
        results = await self.results(detailed)
        healthy = all(result.available for result in results)
        if request.method == "HEAD":
            return _response(204 if healthy else 503, "", "text/plain; charset=UTF-8")
        status = 200 if healthy else 503
        media_type = negotiate(request.headers.get("accept"))
        if media_type == "application/json":
            body = json.dumps(_json_document(results, detailed), indent=4, sort_keys=True)
            return _response(status, body, "application/json")
        if media_type == "text/html":
            return _response(status, _html(results, detailed), "text/html; charset=UTF-8")
        text = "\n".join(result.reason for result in results if result.reason)
        return _response(status, text, "text/plain; charset=UTF-8")

    async def results(self, detailed: bool) -> list[Result]:
        """The disable file's result, then (``detailed``) each probe's, in ``probes`` order;
        ``glimpse status`` reads them too."""
        results = [self._disable_by_file()]
        if detailed:
            results += await asyncio.gather(*(self._probe(p) for p in self.probes))
        return results

    def _disable_by_file(self) -> Result:
        kind = "DisableByFileHealthcheck"
        if not self.disable_file:
            return Result(True, OK, "No 'healthcheck_disable_file' configured", kind)
        if os.path.exists(self.disable_file):
            return Result(False, "DISABLED BY FILE",
                          f"Path '{self.disable_file}' was found", kind)
        return Result(True, OK, f"Path '{self.disable_file}' was not found", kind)

    async def _probe(self, probe: Probe) -> Result:
        lock = self._running[probe.name]
        if not lock.acquire(blocking=False):
            return Result(False, f"{probe.name} unavailable",
                          f"an earlier probe has not answered after {self.timeout:g} s",
                          probe.kind)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        # Read here: a failure settling after the timeout has no one else to read it, and
        # asyncio would log it as never retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

        def run() -> None:
            try:
                outcome: tuple[str, BaseException | None] = (probe.run(), None)
            except BaseException as exc:
                outcome = ("", exc)
            finally:
                lock.release()
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_settle, future, *outcome)

        # A daemon thread of its own, not a pool's: a probe hanging in a connect must not hold
        # up the process's exit, and the lock above allows one per probe.
        threading.Thread(target=run, name=f"health-probe {probe.name}", daemon=True).start()
        try:
            details = await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            return Result(False, f"{probe.name} unavailable",
                          f"no answer within {self.timeout:g} s", probe.kind)
        except (ProbeFailed, GlimpseError) as exc:
            text = exc.message if isinstance(exc, GlimpseError) else str(exc)
            return Result(False, f"{probe.name} unavailable", text, probe.kind)
        except Exception as exc:
            return Result(False, f"{probe.name} unavailable",
                          f"{type(exc).__name__} (see the server log)", probe.kind)
        took = (time.perf_counter() - started) * 1000
        return Result(True, OK, f"{probe.name}: {details} in {took:.1f} ms", probe.kind)


def _settle(future: asyncio.Future[str], details: str, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(details)
    else:
        future.set_exception(error)


def negotiate(accept: str | None) -> str:
    """The offer webob's ``acceptable_offers`` puts first for this Accept header: highest
    quality, the most specific range deciding an offer's quality, ties in OFFERS order; a
    header that is missing, malformed or accepts none of them: text/plain."""
    if not accept:
        return OFFERS[0]
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        if "/" not in media:
            return OFFERS[0]  # webob: an invalid header accepts everything
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    return OFFERS[0]
        ranges.append((media.lower(), quality))
    best, best_quality = OFFERS[0], 0.0
    for offer in OFFERS:
        quality = _quality(offer, ranges)
        if quality > best_quality:
            best, best_quality = offer, quality
    return best


def _quality(offer: str, ranges: list[tuple[str, float]]) -> float:
    kind = offer.split("/")[0]
    found: tuple[int, float] = (-1, 0.0)
    for media, quality in ranges:
        specificity = 2 if media == offer else 1 if media == f"{kind}/*" else (
            0 if media == "*/*" else -1)
        if specificity > found[0]:
            found = (specificity, quality)
    return found[1]


def _response(status: int, body: str, media_type: str) -> Response:
    return Response(body.encode(), status, headers={"content-type": media_type})


def _json_document(results: list[Result], detailed: bool) -> dict[str, object]:
    if not detailed:
        return {"detailed": False, "reasons": [result.reason for result in results]}
    return {
        "detailed": True,
        "python_version": sys.version,
        "now": str(dt.datetime.now(dt.UTC).replace(tzinfo=None)),
        "platform": platform.platform(),
        "gc": {"counts": gc.get_count(), "threshold": gc.get_threshold()},
        "reasons": [{"reason": r.reason, "details": r.details, "class": r.kind}
                    for r in results],
        "greenthreads": [],  # no eventlet here
        "threads": _thread_stacks(),
    }


def _thread_stacks() -> list[str]:
    stacks = []
    for frame in sys._current_frames().values():
        buffer = io.StringIO()
        traceback.print_stack(frame, file=buffer)
        stacks.append(buffer.getvalue())
    return stacks


def _html(results: list[Result], detailed: bool) -> str:
    e = html.escape
    out = ["<HTML>", "<HEAD><TITLE>Healthcheck Status</TITLE></HEAD>", "<BODY>"]
    if detailed:
        out += [
            "<H1>Server status</H1>",
            f"<B>Server hostname:</B><PRE>{e(socket.gethostname())}</PRE>",
            f"<B>Current time:</B><PRE>{e(str(dt.datetime.now(dt.UTC).replace(tzinfo=None)))}"
            "</PRE>",
            f"<B>Python version:</B><PRE>{e(sys.version)}</PRE>",
            f"<B>Platform:</B><PRE>{e(platform.platform())}</PRE>",
            "<HR></HR>",
            "<H2>Garbage collector:</H2>",
            f"<B>Counts:</B><PRE>{e(str(gc.get_count()))}</PRE>",
            f"<B>Thresholds:</B><PRE>{e(str(gc.get_threshold()))}</PRE>",
            "<HR></HR>",
        ]
    heads = ("Kind", "Reason", "Details") if detailed else ("Reason",)
    out += [f"<H2>Result of {len(results)} checks:</H2>",
            '<TABLE bgcolor="#ffffff" border="1">', "<TBODY>", "<TR>",
            *(f"<TH>\n{head}\n</TH>" for head in heads), "</TR>"]
    for r in results:
        cells = (r.kind, r.reason, r.details) if detailed else (r.reason,)
        out += ["<TR>", *(f"    <TD>{e(cell)}</TD>" for cell in cells), "</TR>"]
    out += ["</TBODY>", "</TABLE>", "<HR></HR>"]
    if detailed:
        stacks = _thread_stacks()
        out += [f"<H2>{len(stacks)} thread(s) active:</H2>",
                '<TABLE bgcolor="#ffffff" border="1">', "<TBODY>",
                *(f"<TR>\n    <TD><PRE>{e(stack)}</PRE></TD>\n</TR>" for stack in stacks),
                "</TBODY>", "</TABLE>"]
    out += ["</BODY>", "</HTML>"]
    return "\n".join(out)
