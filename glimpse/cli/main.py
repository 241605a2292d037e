"""Command line: ``glimpse serve``, ``db upgrade``, ``store check|scrub`` and ``status``."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glimpse import log_format
from glimpse import settings as settings_mod
from glimpse.api.v2.schemas import load_operator_schema
from glimpse.cli import cache as cache_cli
from glimpse.errors import GlimpseError, Unavailable
from glimpse.stores.registry import check_stores

if TYPE_CHECKING:
    from glimpse.domain.policy import Policy


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glimpse", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server")
    serve.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file"
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 9292)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument(
        "--allow-unauthenticated-remote", action="store_true", default=None,
        help="serve without authentication on a non-loopback address (dangerous)",
    )
    db = sub.add_parser("db", help="database operations")
    db.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file"
    )
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the schema migrations")
    store = sub.add_parser("store", help="image data operations")
    store.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file"
    )
    store_sub = store.add_subparsers(dest="store_command", required=True)
    check = store_sub.add_parser(
        "check", help="find orphaned objects and images whose data is missing or damaged"
    )
    check.add_argument("--verify", action="store_true",
                       help="also read every active image back and compare its MD5")
    check.add_argument("--repair", action="store_true",
                       help="delete orphaned objects and mark broken images killed")
    store_sub.add_parser("scrub", help="finish delayed deletes (pending_delete images)")
    status = sub.add_parser("status", help="this node: database, stores, uploads (exit 1 if "
                                           "something is down)")
    status.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    cache_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "workers": getattr(args, "workers", None),
        "allow_unauthenticated_remote": getattr(args, "allow_unauthenticated_remote", None),
    }
    try:
        settings = settings_mod.load(args.config, overrides=overrides)
        check_stores(settings)
        load_operator_schema(settings.image_schema_file)
        if settings.property_protection_file is not None:
            from glimpse.app import build_protections

            # Checked before serving (warnings are the server's to log, once).
            build_protections(settings, announce=False)
    except (GlimpseError, OSError, ValueError) as exc:
        print(f"glimpse: configuration error: {exc}", file=sys.stderr)
        return 2
    log_format.configure(settings.log_level, settings.log_format)
    if args.command == "db":
        from glimpse.db import engine as db_engine

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db_engine.upgrade(db_engine.create_engine(settings.effective_database_url))
        print("database schema is up to date")
        return 0
    if args.command == "store":
        return _store(settings, args)
    if args.command == "status":
        from glimpse.cli import status

        return status.run(settings, as_json=args.json)
    if args.command == "cache":
        return cache_cli.run(settings, args)
    return _serve(settings)


def _store(settings: settings_mod.Settings, args: argparse.Namespace) -> int:
    import json

    from glimpse.app import build_audit
    from glimpse.cli.failures import failure_message
    from glimpse.cli.progress import Progress

    try:
        audit = build_audit(settings)
        # On a terminal, stderr shows how far it has got; the report alone goes to stdout.
        with Progress(None, None, sys.stderr) as progress:
            if args.store_command == "scrub":
                outcome: object = {"scrubbed": audit.scrub(progress)}
            else:
                report = audit.check(verify=args.verify, repair=args.repair,
                                     progress=progress)
                outcome = dataclasses.asdict(report)
    except KeyboardInterrupt:
        print(f"glimpse: store {args.store_command} interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a store or the database failing: a message, no traceback
        print(f"glimpse: store {args.store_command} failed: {failure_message(exc)}",
              file=sys.stderr)
        return 3
    # JSON: every control character in a key or id is a \u escape, harmless on a terminal.
    print(json.dumps(outcome, indent=2))
    if args.store_command == "scrub":
        return 0
    # Exit 1 when problems remain, so cron jobs and monitoring notice.
    return 0 if report.clean or args.repair else 1


def _migrate(settings: settings_mod.Settings) -> None:
    """Bring the schema to the newest revision before serving: in a child process when there
    is anything to do (glimpse.db.upgrade_process says why)."""
    from glimpse.db import engine as db_engine
    from glimpse.db import upgrade_process

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.effective_database_url
    engine = db_engine.create_engine(url)
    try:
        if db_engine.current_revision(engine) == db_engine.HEAD_REVISION:
            return
    finally:
        engine.dispose()
    status = upgrade_process.run(url, settings.log_format)
    if status != 0:
        raise SystemExit(f"glimpse: migrating the database schema failed (exit {status})")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _keystone_usable(settings: settings_mod.Settings) -> bool:
    """The start-up check of keystone mode: False (after saying why) when glimpse's service
    user cannot validate tokens, a configuration error. An unreachable Keystone is an outage,
    not a configuration error: the server starts and answers 503 until Keystone is back."""
    import logging

    from glimpse import app as app_mod
    from glimpse.api.keystone_tokens import KeystoneDown

    try:
        app_mod.identity_server(settings).check()
    except GlimpseError as exc:
        print(f"glimpse: configuration error: {exc.message}", file=sys.stderr)
        return False
    except KeystoneDown as exc:
        logging.getLogger("glimpse.cli").warning(
            "starting without the Keystone check (requests get 503 until it answers): %s", exc)
    return True


def _limits_usable(settings: settings_mod.Settings) -> bool:
    """The start-up check of unified limits: False (after saying why) for a configuration
    error (a model other than flat, no endpoint, a service user that may not read limits);
    an unreachable Keystone is an outage: the server starts, quota checks answer 503."""
    import logging

    from glimpse import app as app_mod

    try:
        app_mod.keystone_limits(settings).check()
    except Unavailable as exc:
        logging.getLogger("glimpse.cli").warning(
            "starting without the unified limits check (quota checks get 503 until Keystone "
            "answers): %s", exc.message)
    except GlimpseError as exc:
        print(f"glimpse: configuration error: {exc.message}", file=sys.stderr)
        return False
    return True


def _serve(settings: settings_mod.Settings) -> int:
    if (
        settings.auth_strategy == "noauth"
        and not _is_loopback(settings.host)
        and not settings.allow_unauthenticated_remote
    ):
        print(
            f"glimpse: refusing to serve without authentication (auth_strategy=noauth) on "
            f"{settings.host}: anyone who reaches it is an administrator. Listen on a loopback "
            f"address, or pass --allow-unauthenticated-remote "
            f"(GLIMPSE_ALLOW_UNAUTHENTICATED_REMOTE=true) if a trusted proxy guards it.",
            file=sys.stderr,
        )
        return 2
    from glimpse import app as app_mod
    from glimpse.domain.policy import Policy

    try:
        # Read here, once, so that a file that cannot be used stops glimpse before it serves,
        # and its warnings are logged once (workers read the files again, quietly).
        policy = Policy(app_mod.policy_overrides(settings))
    except GlimpseError as exc:
        print(f"glimpse: configuration error: {exc.message}", file=sys.stderr)
        return 2
    if settings.auth_strategy == "keystone" and not _keystone_usable(settings):
        return 2
    if settings.use_keystone_limits and not _limits_usable(settings):
        return 2

    # The schema is migrated here, once, before any worker starts.
    _migrate(settings)
    from glimpse import metrics

    # Before any worker starts: they inherit the directory their values go to.
    metrics_dir = metrics.prepare(settings)
    try:
        if metrics_dir is not None:
            try:
                metrics.serve(settings, metrics_dir)
            except OSError as exc:
                print(f"glimpse: cannot serve metrics on {settings.metrics_host}:"
                      f"{settings.metrics_port}: {exc.strerror or exc}", file=sys.stderr)
                return 2
        _run(settings, policy)
    finally:
        metrics.remove(metrics_dir)
    return 0


def _run(settings: settings_mod.Settings, policy: Policy) -> None:
    import uvicorn

    from glimpse import app as app_mod
    from glimpse.api.protocol import GlimpseHttpProtocol

    options: dict[str, Any] = {}
    if settings.workers > 1:
        # Worker processes import the app by name; they get the settings through the
        # environment.
        os.environ[app_mod.SETTINGS_ENV] = settings_mod.to_json(settings)
        target: Any = "glimpse.app:worker_app"
        options = {"factory": True, "workers": settings.workers}
    else:
        target = app_mod.build_app(settings, migrate=False, policy=policy)  # _migrate() did
    uvicorn.run(
        target,
        **options,
        host=settings.host,
        port=settings.port,
        http=GlimpseHttpProtocol,
        access_log=False,
        log_level=settings.log_level,
        log_config=log_format.logging_config(settings.log_level, settings.log_format),
        timeout_keep_alive=30,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_period),
        server_header=False,
        proxy_headers=False,  # identity and URLs never come from forwarded headers
    )
