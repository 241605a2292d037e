"""List-page latency at scale: bulk-load N images, then time list pages through the repository.

    .venv/bin/python bench/list_scale.py --sizes 10000 1000000 --engines sqlite postgresql mariadb

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
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.db.tables import image_properties, images
from glimpse.domain.model import Filter, Image, ListQuery, Op, Scope, SortKey, Status
from tests import databases

TENANTS = 1000
DISK_FORMATS = ("raw", "qcow2", "vmdk", "iso", "vhd")
DISTROS = ("ubuntu", "debian", "fedora", "centos", "alpine", "arch", "suse", "rhel", "bsd", "win")
COLUMNS = ("id", "name", "size", "status", "disk_format", "container_format", "min_disk",
           "min_ram", "visibility", "protected", "owner", "created_at", "updated_at", "deleted")
BASE = dt.datetime(2024, 1, 1)


def rows(count: int, seed: int = 7) -> Iterator[tuple[tuple[Any, ...], tuple[str, str, str]]]:
    """Image rows and one property each: 10% public, owners spread over 1,000 tenants, one in
    ten names null, timestamps a millisecond apart."""
    rng = random.Random(seed)
    for i in range(count):
        image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        stamp = BASE + dt.timedelta(milliseconds=i)
        name = None if i % 10 == 3 else f"image-{rng.randrange(count * 10):08d}"
        image = (image_id, name, rng.randrange(1, 1 << 34), "active",
                 DISK_FORMATS[i % len(DISK_FORMATS)], "bare", 0, 0,
                 "public" if i % 10 == 0 else "shared", False,
                 f"tenant-{i % TENANTS}", stamp, stamp, False)
        yield image, (image_id, "distro", DISTROS[i % len(DISTROS)])


def load(engine: sa.Engine, count: int) -> None:
    if engine.dialect.name == "postgresql":
        _copy_postgresql(engine, count)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        return
    if engine.dialect.name in ("mysql", "mariadb"):
        _load_data_mariadb(engine, count)
    else:
        _insert_batches(engine, count)
    with engine.begin() as conn:  # SQLite: ANALYZE's statistics are kept only if committed
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE TABLE images, image_properties, image_members")


def _copy_postgresql(engine: sa.Engine, count: int) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY images ({', '.join(COLUMNS)}) FROM STDIN") as copy_images:  # type: ignore[attr-defined]
            props = []
            for image, prop in rows(count):
                copy_images.write_row(image)
                props.append(prop)
        with cur.copy("COPY image_properties (image_id, name, value) FROM STDIN") as copy_props:  # type: ignore[attr-defined]
            for prop in props:
                copy_props.write_row(prop)
        raw.commit()
    finally:
        raw.close()


def _load_data_mariadb(engine: sa.Engine, count: int) -> None:
    """LOAD DATA LOCAL INFILE of rows sorted by primary key, secondary indexes dropped first and
    built once at the end: InnoDB then appends to its clustered index instead of splitting pages
    at random (ids are random UUIDs), and sorts each secondary index in one pass. Batched
    INSERTs took about ten minutes for a million images; this takes a fraction of that."""
    image_lines: list[str] = []
    prop_lines: list[str] = []
    for image, prop in rows(count):
        image_lines.append("\t".join(map(_tsv_field, image)))
        prop_lines.append("\t".join(map(_tsv_field, prop)))
    image_lines.sort()  # each line starts with the image id
    prop_lines.sort()
    indexes = [*images.indexes, *image_properties.indexes]
    local = sa.create_engine(engine.url, connect_args={"local_infile": True})
    try:
        with tempfile.TemporaryDirectory(prefix="glimpse-bench-") as tmp, local.begin() as conn:
            for index in indexes:
                conn.execute(sa.schema.DropIndex(index))
            for table, columns, lines in (
                ("images", COLUMNS, image_lines),
                ("image_properties", ("image_id", "name", "value"), prop_lines),
            ):
                path = Path(tmp) / f"{table}.tsv"
                path.write_text("\n".join(lines) + "\n", encoding="utf-8")
                conn.exec_driver_sql(
                    f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} "
                    f"CHARACTER SET utf8mb4 ({', '.join(columns)})")
            for index in indexes:
                conn.execute(sa.schema.CreateIndex(index))
    finally:
        local.dispose()


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


def _insert_batches(engine: sa.Engine, count: int) -> None:
    batch_images: list[dict[str, Any]] = []
    batch_props: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for image, (image_id, key, value) in rows(count):
            batch_images.append(dict(zip(COLUMNS, image, strict=True)))
            batch_props.append({"image_id": image_id, "name": key, "value": value})
            if len(batch_images) == 10_000:
                conn.execute(images.insert(), batch_images)
                conn.execute(image_properties.insert(), batch_props)
                batch_images, batch_props = [], []
        if batch_images:
            conn.execute(images.insert(), batch_images)
            conn.execute(image_properties.insert(), batch_props)


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


def measure(kind: str, count: int, limit: int, repeat: int) -> dict[str, Any]:
    with databases.database(kind) as url:
        engine = db_engine.create_engine(url)
        try:
            db_engine.upgrade(engine)
            started = time.perf_counter()
            load(engine, count)
            load_s = time.perf_counter() - started
            repo = SqlImageRepository(engine)
            result: dict[str, Any] = {"engine": kind, "images": count, "page": limit,
                                      "load_seconds": round(load_s, 1), "median_ms": {}}
            for name, call in scenarios(repo, limit).items():
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
    args = parser.parse_args()
    results = []
    for kind in args.engines:
        for size in args.sizes:
            results.append(measure(kind, size, args.limit, args.repeat))
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
