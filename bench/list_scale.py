"""List-page latency at scale: bulk-load N images, then time list pages through the repository.

    .venv/bin/python bench/list_scale.py --sizes 10000 1000000 --engines sqlite postgresql mariadb
    .venv/bin/python bench/list_scale.py --api v2 --sizes 100000 --engines postgresql --explain

``--api v2`` loads a v2 mix (community, private and hidden images, memberships in every
status, tags) and times v2 queries as the v2 handler parses them (glimpse.api.v2.query);
``--explain`` prints each scenario's page statement plan instead of timing only.

Each (engine, size) gets a fresh database migrated to head (SQLite: a temporary file;
PostgreSQL/MariaDB: a throw-away database on the loopback server, see tests/databases.py), bulk
loaded outside the API (COPY on PostgreSQL, LOAD DATA LOCAL INFILE on MariaDB, batched inserts
on SQLite), then analyzed. Every
scenario is one ``SqlImageRepository.list_images`` call, exactly what a list request runs
(query, property loading, Image objects), without HTTP encoding. Each is timed ``--repeat``
times after one warm-up; the median and the growth between the smallest and largest size are
printed as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glimpse.api.v2.query import decode_query, parse_list_query
from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.db.tables import image_members, image_properties, image_tags, images
from glimpse.domain import policy
from glimpse.domain.model import (
    Filter,
    Image,
    ListQuery,
    MemberStatus,
    Op,
    Principal,
    Scope,
    SortKey,
    Status,
)
from tests import databases

TENANTS = 1000
DISK_FORMATS = ("raw", "qcow2", "vmdk", "iso", "vhd")
DISTROS = ("ubuntu", "debian", "fedora", "centos", "alpine", "arch", "suse", "rhel", "bsd", "win")
COLUMNS = ("id", "name", "size", "status", "disk_format", "container_format", "min_disk",
           "min_ram", "visibility", "protected", "owner", "created_at", "updated_at", "deleted",
           "os_hidden")
MEMBER_COLUMNS = ("image_id", "member", "can_share", "position", "status", "created_at",
                  "updated_at")
BASE = dt.datetime(2024, 1, 1)
MEMBER_STATUSES = tuple(str(s) for s in MemberStatus)


class Record(NamedTuple):
    image: tuple[Any, ...]
    prop: tuple[str, str, str]
    members: list[tuple[Any, ...]]
    tags: list[tuple[str, str]]


def rows(count: int, seed: int = 7, v2: bool = False) -> Iterator[Record]:
    """Image rows and one property each: 10% public, owners spread over 1,000 tenants, one in
    ten names null, timestamps a millisecond apart.

    The v2 mix also has 10% community and 10% private images, one in fifty hidden, one image
    in twenty shared with another tenant (accepted, pending, rejected in turn), and tags: one
    of two common ones on a quarter of the images, a rare one on one in a thousand."""
    rng = random.Random(seed)
    for i in range(count):
        image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        stamp = BASE + dt.timedelta(milliseconds=i)
        name = None if i % 10 == 3 else f"image-{rng.randrange(count * 10):08d}"
        size = rng.randrange(1, 1 << 34)
        visibility = "public" if i % 10 == 0 else "shared"
        members: list[tuple[Any, ...]] = []
        tags: list[tuple[str, str]] = []
        if v2:
            visibility = {0: "public", 5: "community", 7: "private"}.get(i % 10, "shared")
            if i % 20 == 1:
                status = MEMBER_STATUSES[i // 20 % 3]
                members.append((image_id, f"tenant-{i * 7 % TENANTS}", False, 1, status,
                                stamp, stamp))
            if i % 4 == 0:
                tags.append((image_id, f"t{i % 8}"))
            if i % 1000 == 0:
                tags.append((image_id, "rare"))
        image = (image_id, name, size, "active",
                 DISK_FORMATS[i % len(DISK_FORMATS)], "bare", 0, 0, visibility, False,
                 f"tenant-{i % TENANTS}", stamp, stamp, False, v2 and i % 50 == 9)
        yield Record(image, (image_id, "distro", DISTROS[i % len(DISTROS)]), members, tags)


class _Table(NamedTuple):
    table: sa.Table
    columns: tuple[str, ...]
    rows: Callable[[], Iterator[tuple[Any, ...]]]  # made again for each pass


def _tables(count: int, v2: bool) -> list[_Table]:
    def of(part: Callable[[Record], list[tuple[Any, ...]]]) -> Callable[[], Iterator[Any]]:
        return lambda: (row for record in rows(count, v2=v2) for row in part(record))

    return [
        _Table(images, COLUMNS, of(lambda r: [r.image])),
        _Table(image_properties, ("image_id", "name", "value"), of(lambda r: [r.prop])),
        _Table(image_members, MEMBER_COLUMNS, of(lambda r: r.members)),
        _Table(image_tags, ("image_id", "value"), of(lambda r: r.tags)),
    ]


def load(engine: sa.Engine, count: int, v2: bool = False) -> None:
    tables = _tables(count, v2)
    if engine.dialect.name == "postgresql":
        _copy_postgresql(engine, tables)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        return
    if engine.dialect.name in ("mysql", "mariadb"):
        _load_data_mariadb(engine, tables)
    else:
        _insert_batches(engine, tables)
    with engine.begin() as conn:  # SQLite: ANALYZE's statistics are kept only if committed
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql(
                "ANALYZE TABLE images, image_properties, image_members, image_tags")


def _copy_postgresql(engine: sa.Engine, tables: list[_Table]) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for table in tables:
            sql = f"COPY {table.table.name} ({', '.join(table.columns)}) FROM STDIN"
            with cur.copy(sql) as copy:
                for row in table.rows():
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def _load_data_mariadb(engine: sa.Engine, tables: list[_Table]) -> None:
    """LOAD DATA LOCAL INFILE of rows sorted by primary key, secondary indexes dropped first and
    built once at the end: InnoDB then appends to its clustered index instead of splitting pages
    at random (ids are random UUIDs), and sorts each secondary index in one pass. Batched
    INSERTs took about ten minutes for a million images; this takes a fraction of that."""
    indexes = [index for table in tables for index in table.table.indexes]
    local = sa.create_engine(engine.url, connect_args={"local_infile": True})
    try:
        with tempfile.TemporaryDirectory(prefix="glimpse-bench-") as tmp, local.begin() as conn:
            rebuild = [_create_index_sql(conn, index) for index in indexes]
            for index in indexes:
                conn.execute(sa.schema.DropIndex(index))
            for table in tables:
                # Each line starts with the image id, the primary key's first column.
                lines = sorted("\t".join(map(_tsv_field, row)) for row in table.rows())
                if not lines:
                    continue
                path = Path(tmp) / f"{table.table.name}.tsv"
                path.write_text("\n".join(lines) + "\n", encoding="utf-8")
                conn.exec_driver_sql(
                    f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table.table.name} "
                    f"CHARACTER SET utf8mb4 ({', '.join(table.columns)})")
            for statement in rebuild:
                conn.exec_driver_sql(statement)
    finally:
        local.dispose()


def _create_index_sql(conn: sa.Connection, index: sa.Index) -> str:
    """The CREATE INDEX of ``index`` as the database holds it. The migrations give MariaDB's
    index over a property's value a prefix length (a TEXT column); the tables module carries no
    MySQL options, so its own definition of the index would be refused."""
    table = index.table.name if index.table is not None else ""
    rows = conn.exec_driver_sql(f"SHOW INDEX FROM {table} WHERE Key_name = %s",
                                (index.name,)).mappings().all()
    parts = [f"{row['Column_name']}({row['Sub_part']})" if row["Sub_part"] else
             str(row["Column_name"]) for row in sorted(rows, key=lambda r: r["Seq_in_index"])]
    unique = "UNIQUE " if rows and not rows[0]["Non_unique"] else ""
    return f"CREATE {unique}INDEX {index.name} ON {table} ({', '.join(parts)})"


def _tsv_field(value: Any) -> str:
    """One field in LOAD DATA's default format (tab-separated, backslash escapes)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _insert_batches(engine: sa.Engine, tables: list[_Table]) -> None:
    with engine.begin() as conn:
        for table in tables:
            batch: list[dict[str, Any]] = []
            for row in table.rows():
                batch.append(dict(zip(table.columns, row, strict=True)))
                if len(batch) == 10_000:
                    conn.execute(table.table.insert(), batch)
                    batch = []
            if batch:
                conn.execute(table.table.insert(), batch)


def scenarios(repo: SqlImageRepository, limit: int) -> dict[str, Callable[[], list[Image]]]:
    by_name = [SortKey("name", descending=False)]

    def marker_at_end(sort: list[SortKey], **kw: Any) -> Image:
        """The image one page before the end of that list (admin's unless told)."""
        reverse = [SortKey(key.field, not key.descending) for key in sort]
        kw.setdefault("scope", Scope.ALL)
        tail = repo.list_images(ListQuery(sort=reverse, limit=limit + 1, **kw))
        return tail[-1]

    by_created = [SortKey("created_at")]
    end_created = marker_at_end(by_created)
    end_name = marker_at_end(by_name)
    end_tenant = marker_at_end(by_created, scope=Scope.VISIBLE, owner="tenant-7")
    end_property = marker_at_end(by_created, properties={"distro": "fedora"})

    def run(**kw: Any) -> Callable[[], list[Image]]:
        return lambda: repo.list_images(ListQuery(limit=limit, **kw))

    return {
        "admin_first_page": run(scope=Scope.ALL),
        "admin_last_page": run(scope=Scope.ALL, marker=end_created),
        "admin_by_name_first_page": run(scope=Scope.ALL, sort=by_name),
        "admin_by_name_last_page": run(scope=Scope.ALL, sort=by_name, marker=end_name),
        "tenant_visible_first_page": run(scope=Scope.VISIBLE, owner="tenant-7"),
        "tenant_visible_last_page": run(scope=Scope.VISIBLE, owner="tenant-7",
                                        marker=end_tenant),
        "filter_disk_format_by_size": run(scope=Scope.ALL,
                                          filters=[Filter("disk_format", Op.EQ, "qcow2")],
                                          sort=[SortKey("size")]),
        "filter_property": run(scope=Scope.ALL, properties={"distro": "fedora"}),
        "filter_property_last_page": run(scope=Scope.ALL, properties={"distro": "fedora"},
                                         marker=end_property),
        "filter_status_killed_none": run(scope=Scope.ALL,
                                         filters=[Filter("status", Op.EQ, str(Status.KILLED))]),
    }


# v2 callers: an admin with a project of its own, and one of the 1,000 tenants.
V2_ADMIN = Principal(tenant="admin", user="a", roles=("admin", "member", "reader"),
                     is_admin=True, owner="admin")
V2_TENANT = Principal(tenant="tenant-7", user="t", roles=("member", "reader"), is_admin=False,
                      owner="tenant-7")


def v2_scenarios(repo: SqlImageRepository,
                 limit: int) -> dict[str, Callable[[], list[Image]]]:
    """v2 queries as the handler parses them, scoped as ImageService.list_images scopes them
    (without its marker lookup: the marker Image is found once, here)."""

    def query(principal: Principal, text: str) -> ListQuery:
        parsed = parse_list_query(decode_query(text.encode()), limit, max(limit, 1000)).query
        parsed.scope = policy.list_scope(principal, parsed.scope)
        parsed.owner = principal.owner
        parsed.limit = limit
        return parsed

    def marker_at_end(principal: Principal, text: str) -> Image:
        """The image one page before the end of that list."""
        reverse = query(principal, text)
        reverse.sort = [SortKey(key.field, not key.descending) for key in reverse.sort]
        reverse.limit = limit + 1
        return repo.list_images(reverse)[-1]

    def run(principal: Principal, text: str, last: bool = False) -> Callable[[], list[Image]]:
        marker = marker_at_end(principal, text) if last else None

        def call() -> list[Image]:
            page = query(principal, text)
            page.marker = marker
            return repo.list_images(page)

        return call

    return {
        "v2_admin_first_page": run(V2_ADMIN, ""),
        "v2_admin_last_page": run(V2_ADMIN, "", last=True),
        "v2_admin_by_name_last_page": run(V2_ADMIN, "sort=name:asc", last=True),
        "v2_tenant_first_page": run(V2_TENANT, ""),
        "v2_tenant_last_page": run(V2_TENANT, "", last=True),
        "v2_tenant_visibility_all_first_page": run(V2_TENANT, "visibility=all"),
        "v2_tenant_visibility_all_last_page": run(V2_TENANT, "visibility=all", last=True),
        "v2_tenant_community_last_page": run(V2_TENANT, "visibility=community", last=True),
        "v2_tenant_member_status_all_last_page": run(V2_TENANT, "member_status=all",
                                                      last=True),
        "v2_tenant_by_name_last_page": run(V2_TENANT, "sort_key=name&sort_dir=asc",
                                           last=True),
        "v2_admin_tag_common": run(V2_ADMIN, "tag=t0"),
        "v2_admin_tag_rare": run(V2_ADMIN, "tag=rare"),
        "v2_admin_hidden": run(V2_ADMIN, "os_hidden=true"),
        "v2_admin_disk_format_in": run(V2_ADMIN, "disk_format=in:qcow2,iso"),
        "v2_tenant_created_at_range": run(
            V2_TENANT, "created_at=gte:2024-01-01T00:00:10Z&created_at=lt:2024-01-01T00:01"),
    }


def explain(engine: sa.Engine, call: Callable[[], list[Image]]) -> str:
    """The plan of the page statement a call runs (the one with ORDER BY and LIMIT)."""
    captured: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not captured and "ORDER BY" in statement and "LIMIT" in statement:
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)
    statement, parameters = captured[0]
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(prefix + statement, parameters).all()
    return "\n".join(" | ".join(str(c) for c in row) for row in plan)


def measure(kind: str, count: int, limit: int, repeat: int, api: str = "v1",
            show_plans: bool = False) -> dict[str, Any]:
    with databases.database(kind) as url:
        engine = db_engine.create_engine(url)
        try:
            db_engine.upgrade(engine)
            started = time.perf_counter()
            load(engine, count, v2=api == "v2")
            load_s = time.perf_counter() - started
            repo = SqlImageRepository(engine)
            result: dict[str, Any] = {"engine": kind, "images": count, "page": limit,
                                      "api": api, "load_seconds": round(load_s, 1),
                                      "median_ms": {}}
            calls = (v2_scenarios if api == "v2" else scenarios)(repo, limit)
            for name, call in calls.items():
                if show_plans:
                    print(f"-- {kind} {count} {name}\n{explain(engine, call)}", file=sys.stderr)
                call()  # warm-up: caches, connection
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    page = call()
                    times.append((time.perf_counter() - t0) * 1000)
                result["median_ms"][name] = round(statistics.median(times), 2)
                result.setdefault("rows", {})[name] = len(page)
            return result
        finally:
            engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=list(databases.ENGINES),
                        choices=databases.ENGINES)
    parser.add_argument("--limit", type=int, default=1000, help="page size (API maximum 1000)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--api", choices=("v1", "v2"), default="v1",
                        help="v1: the repository scenarios; v2: v2 queries on a v2 mix")
    parser.add_argument("--explain", action="store_true",
                        help="print each scenario's page statement plan (stderr)")
    args = parser.parse_args()
    results = []
    for kind in args.engines:
        for size in args.sizes:
            results.append(measure(kind, size, args.limit, args.repeat, args.api, args.explain))
            print(json.dumps(results[-1]), file=sys.stderr)
    growth = {}
    small, large = min(args.sizes), max(args.sizes)
    for kind in args.engines:
        a = next(r for r in results if r["engine"] == kind and r["images"] == small)
        b = next(r for r in results if r["engine"] == kind and r["images"] == large)
        growth[kind] = {k: round(b["median_ms"][k] / a["median_ms"][k], 2)
                        for k in a["median_ms"] if a["median_ms"][k] > 0}
    print(json.dumps({"results": results, f"growth_{small}_to_{large}": growth}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
