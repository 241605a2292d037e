"""``glimpse status``: one screen about this node and its deployment (glimpse.node_status),
or ``--json`` for scripts. Exit 0 when the database and every store answer and the schema is
the one this glimpse needs, 1 when not, 3 when the report itself could not be made.

Image names are a client's text: every control character is shown escaped (``\\x1b``), so a
name cannot move the cursor, recolour or retitle the operator's terminal, nor start a line
that looks like part of the report.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from glimpse.cli.failures import failure_message
from glimpse.cli.progress import human_bytes, human_duration
from glimpse.log_format import escape_controls
from glimpse.node_status import NodeStatus, as_document, survey
from glimpse.settings import Settings

# In-flight uploads listed one per line on the screen (all of them in --json).
SHOWN_UPLOADS = 10
NAME_WIDTH = 40


def run(settings: Settings, as_json: bool, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    try:
        status = survey(settings)
    except KeyboardInterrupt:
        print("glimpse: status interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"glimpse: status failed: {failure_message(exc)}", file=sys.stderr)
        return 3
    if as_json:
        # ensure_ascii: every control character in a name is a \u escape.
        out.write(json.dumps(as_document(status), indent=2, sort_keys=True) + "\n")
    else:
        out.write(render(status))
    return 0 if status.healthy else 1


def render(status: NodeStatus) -> str:
    lines = [f"glimpse {status.version}  node {status.node}",
             f"data dir       {escape_controls(status.data_dir)}"]
    running = [s for s in status.incarnations if s.alive]
    ended = len(status.incarnations) - len(running)
    if running:
        pids = ", ".join(str(s.pid) for s in running if s.pid is not None)
        serving = f"yes: {len(running)} process(es)" + (f" (pid {pids})" if pids else "")
    else:
        serving = "no process of this node is running"
    if ended:
        serving += f"; {ended} ended, not yet forgotten"
    lines.append(f"serving        {serving}")
    if status.drained:
        lines.append("health         DRAINED (the healthcheck disable file exists)")

    db = status.database
    if db.reachable:
        schema = ("current" if db.current else
                  f"NEEDS {db.head}" if db.revision is not None else f"none, needs {db.head}")
        lines.append(f"database       ok    {db.url}  schema {db.revision or '-'} ({schema})  "
                     f"{db.detail}")
    else:
        lines.append(f"database       DOWN  {db.url}  {db.detail}")

    lines.append("stores")
    width = max((len(s.name) for s in status.stores), default=0) + 1
    for store in status.stores:
        label = f"{store.name}{'*' if store.default else ''}".ljust(width)
        space = ""
        if store.free_bytes is not None and store.total_bytes is not None:
            space = f"  free {human_bytes(store.free_bytes)} of {human_bytes(store.total_bytes)}"
        state = "ok  " if store.reachable else "DOWN"
        lines.append(f"  {label}  {state}  {store.driver}{space}  {store.detail}")

    if status.images is None:
        why = "has no glimpse schema" if db.reachable else "did not answer"
        lines.append(f"images         unknown (the database {why})")
    else:
        counts = ", ".join(f"{name} {count}" for name, count in sorted(status.images.items()))
        total = sum(status.images.values())
        lines.append(f"images         {total}" + (f": {counts}" if counts else ""))

    stale = sum(u.stale for u in status.uploads)
    lines.append(f"uploads        {len(status.uploads)} in flight, {stale} stale")
    for upload in status.uploads[:SHOWN_UPLOADS]:
        lines.append(f"  {upload.image_id}  {upload.status:<9} {_name(upload.name)}  "
                     f"{upload.process}, heartbeat {human_duration(upload.heartbeat_age)} ago"
                     + ("  STALE" if upload.stale else ""))
    if len(status.uploads) > SHOWN_UPLOADS:
        lines.append(f"  ... and {len(status.uploads) - SHOWN_UPLOADS} more (--json lists all)")

    notes = status.notifications
    if notes["enabled"]:
        lines.append(f"notifications  on: {_join(notes['driver'])} to {notes['transport_url']}, "
                     f"topics {_join(notes['topics'])}, publisher {notes['publisher_id']}, "
                     f"queue {notes['queue_size']}")
    else:
        lines.append("notifications  off")
    metrics = status.metrics
    lines.append(f"metrics        {'on: ' + str(metrics['url']) if metrics['enabled'] else 'off'}")
    cache = status.cache
    if cache is None:
        lines.append("image cache    off")
    elif cache.size is None:
        lines.append(f"image cache    unreadable ({escape_controls(cache.dir)})")
    else:
        lines.append(f"image cache    {cache.images} image(s), {human_bytes(cache.size)} of "
                     f"{human_bytes(cache.max_size)}, {cache.queued} queued "
                     f"({escape_controls(cache.dir)})")

    for heading, items in (("problems", status.problems), ("warnings", status.warnings)):
        if items:
            lines.append(f"{heading}:")
            lines += [f"  - {escape_controls(item)}" for item in items]
    if status.healthy:
        lines.append("status: ok")
    else:
        lines.append("status: DOWN")
    return "\n".join(lines) + "\n"


def _name(name: str | None) -> str:
    if name is None:
        return "(no name)"
    # Cut before escaping: an escape is never cut in half.
    shown = escape_controls(name[:NAME_WIDTH]) + ("…" if len(name) > NAME_WIDTH else "")
    return f'"{shown}"'


def _join(value: object) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
