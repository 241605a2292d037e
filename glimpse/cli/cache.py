"""``glimpse cache list|queue|delete|clear|prune|clean``: the node's image cache from its own
command line (docs/cache.md). The commands work on the cache directory and database of the
node they run on, through the same service as the v2 cache API; the operator running them is
trusted as an admin. Queued images are prefetched by the node's running server."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from glimpse.settings import Settings

OPERATOR_ROLES = ("admin",)


def register(sub: Any) -> None:
    """Add the ``cache`` command to the top-level subparsers."""
    from pathlib import Path

    cache = sub.add_parser("cache", help="the node's image cache")
    cache.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                       help="TOML settings file")
    commands = cache.add_subparsers(dest="cache_command", required=True)
    commands.add_parser("list", help="cached and queued images")
    for name, text in (("queue", "queue an active image for prefetch"),
                       ("delete", "drop an image from the cache and the queue")):
        command = commands.add_parser(name, help=text)
        command.add_argument("image_id")
    clear = commands.add_parser("clear", help="empty the cache, the queue, or both")
    clear.add_argument("--target", choices=("cache", "queue", "both"), default="both")
    commands.add_parser("prune", help="evict least recently used images down to the limit")
    commands.add_parser("clean", help="remove partial fills no process is writing")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from glimpse.app import build_cache, build_storage
    from glimpse.cli.progress import Progress
    from glimpse.domain.caching import CacheService
    from glimpse.domain.model import Principal
    from glimpse.domain.policy import Policy
    from glimpse.errors import GlimpseError
    from glimpse.incarnation import node_name
    from glimpse.metrics import NullRecorder

    if settings.effective_cache_dir is None:
        print("glimpse: no image cache is configured (set image_cache_dir)", file=sys.stderr)
        return 2
    engine, repo, _ = build_storage(settings)
    cache = build_cache(settings, engine, node_name(socket.gethostname(), settings.data_dir),
                        NullRecorder())
    assert cache is not None  # configured, as checked above
    service = CacheService(repo, cache, Policy())
    operator = Principal(None, None, OPERATOR_ROLES, True, None)
    command = args.cache_command
    try:
        if command == "list":
            cached, queued = service.state(operator)
            report: dict[str, Any] = {
                "cached_images": [{"image_id": c.image_id, "size": c.size, "hits": c.hits,
                                   "last_accessed": c.last_accessed.isoformat()}
                                  for c in cached],
                "queued_images": queued, "size": sum(c.size for c in cached),
                "max_size": settings.image_cache_max_size}
        elif command == "queue":
            service.queue(operator, args.image_id)
            report = {"queued": args.image_id}
        elif command == "delete":
            service.delete(operator, args.image_id)
            report = {"deleted": args.image_id}
        elif command == "clear":
            with Progress(None, None, sys.stderr) as progress:
                cached_n, queued_n = service.clear(
                    operator, "" if args.target == "both" else args.target, progress)
            report = {"cache_deleted": cached_n, "queue_deleted": queued_n}
        elif command == "prune":
            # On a terminal, stderr shows how far it has got; the report alone goes to stdout.
            with Progress(None, None, sys.stderr) as progress:
                pruned = service.prune(operator, progress)
            report = {"total_files_pruned": pruned.files, "total_bytes_pruned": pruned.bytes}
        else:
            report = {"cleaned": service.clean(operator)}
    except GlimpseError as exc:
        print(f"glimpse: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(json.dumps(report, indent=2))
    return 0
