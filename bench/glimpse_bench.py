#!/usr/bin/env python3
"""glimpse's benchmark: one or two image services side by side (Python 3.11 stdlib only).

    python3 bench/glimpse_bench.py --url http://127.0.0.1:9292 --header 'X-Tenant-Id: bench' \\
        [--url-b http://127.0.0.1:9393 --api-b v2 --header-b 'X-Roles: admin' ...] \\
        [SCENARIO ...] [--json out.json] [--baseline old.json]

A target in keystone mode gets a real token (--keystone-token, --keystone-token-b), asked for
once from the Keystone of --keystone-url; with one target in keystone mode and one not, the
run ends with what keystone mode costs per head_rps request, and --keystone-log (Keystone's
access log) counts the token validations it made.

Each target speaks Images v1 or v2 (--api, --api-b): glimpse either, Glance v2 only.
Scenarios: upload_1g download_1g upload_small head_rps list_1000 server_rss (default: all).
Each scenario runs --rounds times per target, interleaved A B A B ..., and the table shows per
metric the median [min-max] per target and the A/B ratio of the medians. Every run also
records the server's CPU seconds (its whole process tree, from /proc), the client's, and the
rest of the machine's ("other": noise from other work). Any failed check stops the run with
"BENCH FAILED: ..." and exit code 2. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from types import FrameType
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import proctree
from apis import BenchError
from keystone import Account, Token, ValidationLog, issue_token
from scenarios import (
    CPU_METRICS,
    METRICS,
    SCENARIOS,
    Runner,
    Samples,
    Settings,
    Target,
    log,
)

SETTING_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}

FAIL_EXIT = 2


# glimpse's anonymous administrator (a request without identity headers) lists public images
# only, so it would not see the listing set it made: v1 targets get an identity by default.
DEFAULT_V1_HEADERS = {"X-Tenant-Id": "bench", "X-Roles": "admin"}


def target_headers(items: list[str], api: str, token: Token | None = None) -> dict[str, str]:
    if token is not None:
        # glimpse in keystone mode ignores identity headers: the token is the identity.
        return {**parse_headers(items), "X-Auth-Token": token.value}
    if not items and api == "v1":
        return dict(DEFAULT_V1_HEADERS)
    return parse_headers(items)


def parse_headers(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"bad header {item!r}: expected 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="glimpse_bench.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"{', '.join(SCENARIOS)} or all"
    )
    tg = ap.add_argument_group("targets")
    tg.add_argument("--url", required=True, help="target A, e.g. http://127.0.0.1:9292")
    tg.add_argument("--api", choices=["v1", "v2"], default="v1", help="A's API (default v1)")
    tg.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'K: V'",
        help="request header for A (repeatable); v1 default: 'X-Tenant-Id: bench', "
        "'X-Roles: admin'",
    )
    tg.add_argument("--pid", type=int, help="A's server PID (default: found from the port)")
    tg.add_argument("--url-b", help="target B, compared side by side with A")
    tg.add_argument("--api-b", choices=["v1", "v2"], help="B's API (default: as --api)")
    tg.add_argument(
        "--header-b",
        action="append",
        default=[],
        metavar="'K: V'",
        help="request header for B (repeatable); v1 default as for A",
    )
    tg.add_argument("--pid-b", type=int, help="B's server PID")
    tg.add_argument("--keystone-token", action="store_true",
                    help="A is in keystone mode: send it a Keystone token (X-Auth-Token), asked "
                    "for once at the start")
    tg.add_argument("--keystone-token-b", action="store_true", help="the same for B")
    ks = ap.add_argument_group(
        "keystone (for --keystone-token; defaults from the OS_* variables of OpenStack's clients)")
    env = os.environ
    ks.add_argument("--keystone-url", default=env.get("OS_AUTH_URL"),
                    help="identity v3 URL, e.g. http://127.0.0.1:5000/v3 (OS_AUTH_URL)")
    ks.add_argument("--keystone-user", default=env.get("OS_USERNAME"), help="(OS_USERNAME)")
    ks.add_argument("--keystone-password", default=env.get("OS_PASSWORD"),
                    help="(OS_PASSWORD)")
    ks.add_argument("--keystone-project", default=env.get("OS_PROJECT_NAME"),
                    help="the token's project (OS_PROJECT_NAME)")
    ks.add_argument("--keystone-domain", default="Default",
                    help="the user's and the project's domain (%(default)s)")
    ks.add_argument("--keystone-log", metavar="FILE",
                    help="Keystone's access log (scripts/keystone: .keystone/log/access.log): "
                    "count the token validations (GET /v3/auth/tokens) of each run and of the "
                    "whole benchmark")
    sz = ap.add_argument_group("sizes")
    sz.add_argument("--rounds", type=int, default=3, help="runs per target and scenario (3)")
    # Defaults are the Settings dataclass's, so they are written once.
    for name, help_text in (
        ("big_mib", "upload_1g/download_1g MiB"),
        ("small_count", "upload_small images"),
        ("small_kib", "upload_small KiB each"),
        ("small_threads", "upload_small threads"),
        ("head_connections", "head_rps connections"),
        ("head_seconds", "head_rps seconds"),
        ("list_images", "listing-set images that list_1000 makes sure exist"),
        ("list_limit", "list_1000 page size"),
        ("multihash", "os_hash_algo every v2 image must report, its digest checked"),
    ):
        default = SETTING_DEFAULTS[name]
        sz.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                        help=help_text + " (%(default)s)")
    out = ap.add_argument_group("data and output")
    out.add_argument(
        "--data-dir",
        default=os.path.join(tempfile.gettempdir(), "glimpse-bench"),
        help="where the big pseudo-random file is cached (default: %(default)s)",
    )
    out.add_argument("--json", metavar="FILE", help="write every sample to FILE")
    out.add_argument(
        "--baseline",
        metavar="FILE",
        help="compare this run's A with target A of a saved --json FILE",
    )
    out.add_argument(
        "--keep", action="store_true", help="keep the temporary images (big, probe) at exit"
    )
    return ap


def choose_scenarios(names: list[str], parser: argparse.ArgumentParser) -> list[str]:
    if not names or "all" in names:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {SCENARIOS} or all")
    return [s for s in SCENARIOS if s in names]


# ------------------------------------------------------------------------------------ report


def fmt(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    a = abs(v)
    if v.is_integer() and a < 1e9:
        return str(int(v))
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def median(samples: list[float] | None) -> float | None:
    return statistics.median(samples) if samples else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def metric_rows(scenario: str, labels: dict[str, dict[str, list[float]]]) -> list[tuple[str, str]]:
    rows = METRICS[scenario] + ([] if scenario == "server_rss" else CPU_METRICS)
    return [(m, better) for m, better in rows if any(m in v for v in labels.values())]


def print_table(
    samples: Samples, targets: list[Target], rounds: int, seconds: float, multihash: str
) -> None:
    labels = [t.label for t in targets]
    print()
    for t in targets:
        print(f"# {t.describe()}")
    if any(t.api.shows_multihash for t in targets):
        print(f"# every uploaded image checked: size, md5 checksum, and on v2 {multihash} "
              "os_hash_value")
    print(
        f"# {rounds} round(s) per target, interleaved; median [min-max]"
        + ("; A/B = median A / median B" if len(labels) == 2 else "")
        + f"; better: hi/lo; {time.strftime('%Y-%m-%d %H:%M:%S')}, took {seconds:.0f} s"
    )
    cell_w = 30
    head = f"{'scenario':<13} {'metric':<15} {'better':<6}"
    head += "".join(f" {lab + ' median [min-max]':>{cell_w}}" for lab in labels)
    print(head + (f" {'A/B':>7}" if len(labels) == 2 else ""))
    for scenario in SCENARIOS:
        per_label = samples.data.get(scenario)
        if not per_label:
            continue
        for metric, better in metric_rows(scenario, per_label):
            line = f"{scenario:<13} {metric:<15} {better:<6}"
            medians = []
            for lab in labels:
                vals = per_label.get(lab, {}).get(metric)
                medians.append(median(vals))
                cell = f"{fmt(median(vals))} [{fmt(min(vals))}-{fmt(max(vals))}]" if vals else "-"
                line += f" {cell:>{cell_w}}"
            if len(labels) == 2:
                line += f" {fmt(ratio(medians[0], medians[1])):>7}"
            print(line)


def print_baseline(samples: Samples, path: str) -> None:
    try:
        with open(path) as f:
            old = json.load(f)
        old_results: dict[str, Any] = old["results"]
    except (OSError, ValueError, KeyError) as exc:
        raise BenchError(f"cannot read baseline {path}: {exc}") from None
    print()
    print(f"# baseline {path}: {old.get('started', '?')}, {old.get('targets', {}).get('A', '?')}")
    print(
        "# now = this run's A, then = the baseline's A (medians); now/then > 1 is better "
        "for 'hi' metrics, < 1 for 'lo'. Machine noise differs between runs: check other_cpu_s."
    )
    print(f"{'scenario':<13} {'metric':<15} {'better':<6} {'now':>10} {'then':>10} {'now/then':>9}")
    for scenario in SCENARIOS:
        now = samples.data.get(scenario, {}).get("A")
        then = old_results.get(scenario, {}).get("A")
        if not now or not then:
            continue
        for metric, better in metric_rows(scenario, {"A": now}):
            a, b = median(now.get(metric)), median(then.get(metric))
            if a is None or b is None:
                continue
            print(
                f"{scenario:<13} {metric:<15} {better:<6} {fmt(a):>10} {fmt(b):>10} "
                f"{fmt(ratio(a, b)):>9}"
            )


def print_keystone_cost(samples: Samples, targets: list[Target], keystone: list[bool],
                        validations: ValidationLog | None, started: float) -> None:
    """What keystone mode adds to a head_rps request: the keystone target's medians less the
    other's, from the same interleaved rounds."""
    per_label = samples.data.get("head_rps", {})
    if len(targets) != 2 or keystone[0] == keystone[1] or len(per_label) != 2:
        return
    ks, plain = (targets[0], targets[1]) if keystone[0] else (targets[1], targets[0])

    def med(t: Target, metric: str) -> float | None:
        return median(per_label.get(t.label, {}).get(metric))

    print()
    print(f"# keystone mode's cost per head_rps request: {ks.label} (keystone mode) less "
          f"{plain.label} (not), medians of the same interleaved rounds")
    def per_request(t: Target) -> float | None:
        rate = med(t, "req/s")  # closed loop: its inverse is the wall time per request
        return 1e6 / rate if rate else None

    rows = (("server CPU per request (us)", med(ks, "srv_us/req"), med(plain, "srv_us/req")),
            ("wall time per request, 1/(req/s) (us)", per_request(ks), per_request(plain)),
            ("p50 latency (ms)", med(ks, "p50_ms"), med(plain, "p50_ms")),
            ("p99 latency (ms)", med(ks, "p99_ms"), med(plain, "p99_ms")))
    for name, a, b in rows:
        if a is None or not b:
            continue
        print(f"#   {name:<40} {ks.label} {fmt(a):>8}  {plain.label} {fmt(b):>8}  "
              f"added {fmt(a - b):>8} ({fmt(100 * (a - b) / b)}%)")
    # Round i of one target ran right after round i of the other: their differences show how
    # far the machine's noise reaches.
    ks_rounds = per_label.get(ks.label, {}).get("srv_us/req", [])
    plain_rounds = per_label.get(plain.label, {}).get("srv_us/req", [])
    paired = [k - p for k, p in zip(ks_rounds, plain_rounds, strict=False)]
    if len(paired) > 1:
        print(f"#   server CPU added per request, round by round (us): median "
              f"{fmt(statistics.median(paired))} [{fmt(min(paired))} to {fmt(max(paired))}]")
    _, srv_ks, srv_plain = rows[0]
    if srv_ks is not None and srv_plain is not None:
        added_ms = (srv_ks - srv_plain) / 1e3
        verdict = "met" if added_ms <= 0.1 else "NOT met"
        print(f"#   goal, a cache hit adds at most 0.1 ms of server CPU: {verdict} "
              f"({fmt(added_ms)} ms)")
    if validations is not None:
        total = validations.count()
        timed = sum(per_label.get(ks.label, {}).get("ks_validations", []))
        processes = len(proctree.tree(ks.pid)) if ks.pid else 0
        print(f"# Keystone validations (GET /v3/auth/tokens in {validations.path}): "
              f"{total} in the {time.time() - started:.0f} s since the token was issued, "
              f"{fmt(timed)} during the timed head_rps runs; one token; "
              f"{ks.label}'s server tree has {processes or '?'} process(es)")


SECRET_OPTIONS = ("--keystone-password",)
SECRET_HEADERS = ("x-auth-token", "x-service-token")


def redacted(argv: list[str]) -> list[str]:
    """The command line as the --json file may keep it: no password, no token."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        name, eq, _ = arg.partition("=")
        if hide_next:
            out.append("***")
        elif name in SECRET_OPTIONS and eq:
            out.append(name + "=***")
        elif any(f"{h}:" in arg.lower() for h in SECRET_HEADERS):
            out.append(arg.partition(":")[0] + ": ***")
        else:
            out.append(arg)
        hide_next = not hide_next and arg in SECRET_OPTIONS
    return out


def write_json(path: str, doc: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------- main


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    chosen = choose_scenarios(args.scenarios, parser)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    settings = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
                           if hasattr(args, f.name)})
    keystone = [args.keystone_token, bool(args.url_b) and args.keystone_token_b]
    if args.keystone_token_b and not args.url_b:
        parser.error("--keystone-token-b needs --url-b")
    token: Token | None = None
    validations: ValidationLog | None = None
    if any(keystone):
        missing = [name for name in ("url", "user", "password", "project")
                   if not getattr(args, "keystone_" + name)]
        if missing:
            parser.error("--keystone-token needs " + ", ".join(f"--keystone-{m}" for m in missing))
        if args.keystone_log:
            validations = ValidationLog(args.keystone_log)
        try:
            token = issue_token(Account(args.keystone_url, args.keystone_user,
                                        args.keystone_password, args.keystone_project,
                                        args.keystone_domain))
        except BenchError as exc:
            print(f"BENCH FAILED: {exc}", file=sys.stderr)
            return FAIL_EXIT
        log(f"got {token.describe()} for project {token.project_id}, "
            f"expires {token.expires_at}")
    targets = [Target("A", args.url, args.api,
                      target_headers(args.header, args.api, token if keystone[0] else None),
                      args.pid)]
    if args.url_b:
        api_b = args.api_b or args.api
        targets.append(
            Target("B", args.url_b, api_b,
                   target_headers(args.header_b, api_b, token if keystone[1] else None),
                   args.pid_b)
        )
    runner = Runner(settings)
    samples = Samples()
    # server_rss is measured during upload_1g: run that even when only server_rss is asked for.
    execute = [s for s in chosen if s != "server_rss"]
    if "server_rss" in chosen and "upload_1g" not in execute:
        execute.insert(0, "upload_1g")
    started = time.time()
    failure: str | None = None
    keystone = keystone[: len(targets)]
    mode = {t.label: ks for t, ks in zip(targets, keystone, strict=True)}
    for t in targets:
        log(t.describe())
    try:
        for t in targets:
            if t.pid is None:
                if "server_rss" in chosen:
                    raise BenchError(
                        f"{t.label}: server PID not found from port "
                        f"{t.endpoint.port}; give --pid{'-b' * (t.label == 'B')}"
                    )
                log(f"  {t.label}: server PID unknown, srv_cpu_s is not measured")
            try:
                with t.conn() as conn:  # reachable, and the API answers
                    for _ in range(3):
                        next(iter(t.api.pages(conn, 1)))
            except Exception as exc:
                raise BenchError(
                    f"{t.label} ({t.url}, API {t.api.name}) does not answer a list request: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        if "list_1000" in execute:
            done: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
            for t in targets:
                key = (t.url, t.api.name, tuple(sorted(t.headers.items())))
                if key not in done:
                    runner.populate(t)
                    done.add(key)
        for scenario in execute:
            for rnd in range(1, args.rounds + 1):
                for t in targets:
                    before = validations.count() if validations and mode[t.label] else None
                    try:
                        metrics = runner.run(scenario, t)
                        if validations is not None and before is not None:
                            metrics["ks_validations"] = float(validations.count() - before)
                    except BenchError:
                        raise
                    except Exception as exc:
                        raise BenchError(
                            f"{t.label} {scenario} round {rnd}: {type(exc).__name__}: {exc}"
                        ) from exc
                    samples.add(scenario, t.label, metrics)
                    headline = METRICS[scenario][0][0]
                    log(
                        f"  {scenario} round {rnd}/{args.rounds} {t.label}: "
                        f"{headline}={fmt(metrics[headline])}"
                        f" srv_cpu={fmt(metrics.get('srv_cpu_s'))}s"
                        f" other_cpu={fmt(metrics.get('other_cpu_s'))}s"
                    )
    except BenchError as exc:
        failure = str(exc)
    except KeyboardInterrupt as exc:
        failure = f"interrupted ({exc or 'Ctrl-C'})"
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        for t in targets:
            left = t.tracked()
            if not left:
                continue
            if args.keep:
                log(f"  {t.label}: keeping {len(left)} temporary image(s): {' '.join(left)}")
                continue
            try:
                t.delete_images(left, threads=2)
            except Exception as exc:
                msg = f"{t.label}: deleting temporary images failed: {exc}"
                log(f"  {msg}")
                failure = failure or msg

    if "upload_1g" in samples.data and "server_rss" in chosen:
        rss_metrics = {m for m, _ in METRICS["server_rss"]}
        samples.data["server_rss"] = {
            lab: {k: v for k, v in per.items() if k in rss_metrics}
            for lab, per in samples.data["upload_1g"].items()
        }
        if "upload_1g" not in chosen:
            del samples.data["upload_1g"]
    if samples.data:
        print_table(samples, targets, args.rounds, time.time() - started, settings.multihash)
        print_keystone_cost(samples, targets, keystone, validations, started)
    if args.baseline:
        try:
            print_baseline(samples, args.baseline)
        except BenchError as exc:
            failure = failure or str(exc)
    if args.json:
        write_json(
            args.json,
            {
                "tool": "glimpse_bench",
                "format": 1,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "seconds": time.time() - started,
                "argv": redacted(sys.argv[1:] if argv is None else argv),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "loadavg_at_end": os.getloadavg(),
                },
                "settings": vars(settings),
                "rounds": args.rounds,
                "scenarios": chosen,
                "targets": {t.label: t.describe() for t in targets},
                "keystone_mode": mode,
                "results": samples.data,
                "failed": failure,
            },
        )
        log(f"samples written to {args.json}")
    if failure:
        print(f"BENCH FAILED: {failure}", file=sys.stderr)
        return FAIL_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
