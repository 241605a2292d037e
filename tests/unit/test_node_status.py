"""`glimpse status`'s report (glimpse.node_status, glimpse.cli.status): what it finds in a real
data directory and SQLite database, what it counts as down, and what it never shows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from glimpse import incarnation as incarnation_mod
from glimpse.cli import status as status_cli
from glimpse.db import engine as db_engine
from glimpse.db.tables import images
from glimpse.domain.model import now
from glimpse.incarnation import Incarnation
from glimpse.node_status import as_document, display_url, survey
from glimpse.settings import Settings, StoreConfig
from tests.e2e.server import free_port

# Fixed: it names parametrized tests, which the xdist workers must agree on.
SECRET = "s3cr3t-5f0c9a7e41d2b6"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    db_engine.upgrade(db_engine.create_engine(f"sqlite:///{tmp_path / 'glimpse.sqlite'}"))
    return tmp_path


@pytest.fixture
def live(data_dir: Path) -> Iterator[Incarnation]:
    """A running process of the node, as a glimpse serve worker holds it."""
    incarnation = Incarnation(data_dir)
    yield incarnation
    incarnation.close()


def add_image(data_dir: Path, status: str, name: str | None = "img", *,
              node: str | None = None, incarnation: str | None = None,
              age: float = 0.0) -> str:
    image_id = str(uuid.uuid4())
    moment = now()
    engine = db_engine.create_engine(f"sqlite:///{data_dir / 'glimpse.sqlite'}")
    with engine.begin() as conn:
        conn.execute(sa.insert(images).values(
            id=image_id, name=name, status=status, created_at=moment,
            updated_at=moment - dt.timedelta(seconds=age), claim_node=node,
            claim_incarnation=incarnation))
    engine.dispose()
    return image_id


def settings_for(data_dir: Path, **values: object) -> Settings:
    return dataclasses.replace(Settings(data_dir=data_dir), **values)  # type: ignore[arg-type]


def this_node(data_dir: Path) -> str:
    return incarnation_mod.node_name(socket.gethostname(), data_dir)


def test_a_healthy_node(data_dir: Path, live: Incarnation) -> None:
    for status in ("active", "active", "queued", "deleted"):
        add_image(data_dir, status)
    report = survey(settings_for(data_dir))
    assert report.healthy and report.problems == []
    assert report.database.reachable and report.database.current
    assert report.database.revision == db_engine.HEAD_REVISION
    assert report.images == {"active": 2, "queued": 1, "deleted": 1}
    [store] = report.stores
    assert (store.name, store.driver, store.default, store.reachable) == (
        "file", "filesystem", True, True)
    assert store.free_bytes is not None and store.total_bytes is not None
    assert 0 < store.free_bytes <= store.total_bytes
    assert report.node == this_node(data_dir) == live.node
    assert [(s.id, s.alive) for s in report.incarnations] == [(live.incarnation, True)]
    assert report.warnings == []
    out = io.StringIO()
    assert status_cli.run(settings_for(data_dir), as_json=False, out=out) == 0
    text = out.getvalue()
    assert "database       ok" in text and f"schema {db_engine.HEAD_REVISION} (current)" in text
    assert "images         4: active 2, deleted 1, queued 1" in text
    assert "yes: 1 process(es)" in text and text.endswith("status: ok\n")


def test_uploads_in_flight_who_runs_them_and_the_stale_ones(data_dir: Path,
                                                            live: Incarnation) -> None:
    node = this_node(data_dir)
    dead = Incarnation(data_dir)
    dead_id = dead.incarnation
    os.close(dead._fd)  # its process died without a clean exit: the lock file stays
    running = add_image(data_dir, "saving", node=node, incarnation=live.incarnation)
    orphaned = add_image(data_dir, "saving", node=node, incarnation=dead_id)
    elsewhere = add_image(data_dir, "importing", node="other-host/0123456789abcdef",
                          incarnation=uuid.uuid4().hex)
    stale = add_image(data_dir, "saving", node="other-host/0123456789abcdef",
                      incarnation=uuid.uuid4().hex, age=600)
    report = survey(settings_for(data_dir, stale_upload_timeout=60.0))
    by_id = {u.image_id: u for u in report.uploads}
    assert by_id.keys() == {running, orphaned, elsewhere, stale}
    assert by_id[running].process == "running" and not by_id[running].stale
    assert by_id[orphaned].process == "ended"
    assert by_id[elsewhere].process == "other node" and by_id[elsewhere].status == "importing"
    assert by_id[stale].stale and by_id[stale].heartbeat_age >= 600
    assert {(s.id, s.alive) for s in report.incarnations} == {
        (live.incarnation, True), (dead_id, False)}
    # Worth a look, but nothing is down.
    assert report.healthy
    assert any("1 stale upload" in w for w in report.warnings)
    assert any("ended processes of this node" in w for w in report.warnings)
    text = status_cli.render(report)
    assert "uploads        4 in flight, 1 stale" in text
    assert "STALE" in text and "1 ended, not yet forgotten" in text
    # Looking removed nothing: the ended incarnation's file is for glimpse serve to forget.
    assert (data_dir / "incarnations" / f"{dead_id}.lock").exists()


def test_image_names_cannot_drive_the_terminal(data_dir: Path) -> None:
    hostile = "\x1b[2J\x1b]0;owned\x07\x1b[31mred\r\nstatus: ok\u2028"
    add_image(data_dir, "saving", name=hostile, node="n", incarnation=uuid.uuid4().hex)
    report = survey(settings_for(data_dir))
    text = status_cli.render(report)
    assert not any(ch in text for ch in "\x1b\x07\r\u2028")
    assert '"\\x1b[2J\\x1b]0;owned\\x07\\x1b[31mred\\r\\nstatus: ok\\u2028"' in text
    out = io.StringIO()
    status_cli.run(settings_for(data_dir), as_json=True, out=out)
    assert not any(ch in out.getvalue() for ch in "\x1b\x07\r\u2028")
    [upload] = json.loads(out.getvalue())["uploads"]
    assert upload["name"] == hostile


def test_a_database_that_is_down(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: connections are refused
    url = f"postgresql+psycopg://glimpse:{SECRET}@127.0.0.1:{port}/glimpse?sslkey={SECRET}"
    settings = settings_for(tmp_path, database_url=url, healthcheck_timeout=10.0)
    report = survey(settings)
    assert not report.healthy and not report.database.reachable
    assert report.database.url == f"postgresql+psycopg://127.0.0.1:{port}/glimpse"
    assert report.images is None and report.uploads == []
    assert report.problems[0].startswith("database unavailable: OperationalError")
    out = io.StringIO()
    assert status_cli.run(settings, as_json=True, out=out) == 1
    assert SECRET not in out.getvalue() and SECRET not in status_cli.render(report)
    assert json.loads(out.getvalue())["healthy"] is False


def test_a_missing_sqlite_database_is_reported_not_created(tmp_path: Path) -> None:
    report = survey(settings_for(tmp_path))
    assert not report.database.reachable
    assert "no database file at" in report.database.detail
    assert not (tmp_path / "glimpse.sqlite").exists()
    assert status_cli.run(settings_for(tmp_path), as_json=False, out=io.StringIO()) == 1


def test_a_schema_behind_this_glimpse_is_a_problem(tmp_path: Path) -> None:
    db_engine.upgrade(db_engine.create_engine(f"sqlite:///{tmp_path / 'glimpse.sqlite'}"),
                      "0006")
    report = survey(settings_for(tmp_path))
    assert report.database.reachable and report.database.revision == "0006"
    assert not report.database.current and not report.healthy
    assert "glimpse db upgrade" in report.problems[0]
    assert f"NEEDS {db_engine.HEAD_REVISION}" in status_cli.render(report)


def test_a_store_that_is_down_without_its_credentials(data_dir: Path) -> None:
    pytest.importorskip("swiftclient", reason="the swift store's library (glimpse[swift])")
    remote = StoreConfig("remote", "swift", {
        "auth_url": f"http://admin:{SECRET}@127.0.0.1:{free_port()}/auth/v1.0",
        "user": "test:tester", "key": SECRET, "retries": 0, "timeout": 2})
    settings = settings_for(
        data_dir, stores=(remote,), notifications=True,
        notification_transport_url=f"rabbit://glimpse:{SECRET}@127.0.0.1:5672/",
        metrics_port=9109)
    report = survey(settings)
    states = {s.name: s for s in report.stores}
    assert states["file"].reachable and not states["remote"].reachable
    assert states["remote"].driver == "swift" and states["remote"].free_bytes is None
    assert report.problems == [f"store 'remote' unavailable: {states['remote'].detail}"]
    assert report.notifications["transport_url"] == "rabbit://***@127.0.0.1:5672/"
    assert report.metrics == {"enabled": True, "url": "http://127.0.0.1:9109/metrics"}
    text = status_cli.render(report)
    document = json.dumps(as_document(report))
    assert SECRET not in text and SECRET not in document
    assert "remote   DOWN  swift" in text or "remote  DOWN  swift" in text


def test_a_drained_node_is_a_warning(data_dir: Path) -> None:
    disable = data_dir / "drain"
    disable.touch()
    report = survey(settings_for(data_dir, healthcheck_disable_file=str(disable)))
    assert report.drained and report.healthy
    assert any(w.startswith("drained:") for w in report.warnings)
    assert "DRAINED" in status_cli.render(report)


@pytest.mark.parametrize(("url", "shown"), [
    (f"postgresql+psycopg://glimpse:{SECRET}@db.example:5432/glimpse?sslpassword={SECRET}",
     "postgresql+psycopg://db.example:5432/glimpse"),
    (f"mysql+pymysql://root:{SECRET}@10.0.0.5/glimpse", "mysql+pymysql://10.0.0.5/glimpse"),
    ("sqlite:////var/lib/glimpse/glimpse.sqlite", "sqlite:////var/lib/glimpse/glimpse.sqlite"),
    (f"not a url {SECRET}@x", "***@x"),
])
def test_database_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_incarnation_survey_only_looks(tmp_path: Path) -> None:
    assert incarnation_mod.survey(tmp_path) == []
    assert not (tmp_path / "incarnations").exists()
    live = Incarnation(tmp_path)
    try:
        ended = uuid.uuid4().hex
        (tmp_path / "incarnations" / f"{ended}.lock").write_text("4242\n")
        (tmp_path / "incarnations" / "not-an-id.lock").write_text("1\n")
        sightings = {s.id: s for s in incarnation_mod.survey(tmp_path)}
        assert sightings.keys() == {live.incarnation, ended}
        assert sightings[live.incarnation].alive
        assert sightings[live.incarnation].pid == os.getpid()
        assert not sightings[ended].alive and sightings[ended].pid == 4242
        # The live one still holds its lock after being looked at.
        assert not live.ended(live.incarnation)
        probe = Incarnation(tmp_path)
        assert not probe.ended(live.incarnation) and probe.ended(ended)
        probe.close()
    finally:
        live.close()


def test_a_report_that_cannot_be_made_is_one_line(data_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def broken(_: Settings) -> None:
        raise OSError(13, f"Permission denied: '/srv/{SECRET}'")

    monkeypatch.setattr(status_cli, "survey", broken)
    out = io.StringIO()
    assert status_cli.run(settings_for(data_dir), as_json=True, out=out) == 3
    assert out.getvalue() == ""
    err = capsys.readouterr().err
    assert err == ("glimpse: status failed: PermissionError (GLIMPSE_LOG_LEVEL=debug shows "
                   "the details)\n")


def test_an_empty_database_has_nothing_to_count(tmp_path: Path) -> None:
    db_engine.create_engine(f"sqlite:///{tmp_path / 'glimpse.sqlite'}").connect().close()
    report = survey(settings_for(tmp_path))
    assert report.database.reachable and report.database.revision is None
    assert report.images is None and not report.healthy
    text = status_cli.render(report)
    assert f"schema - (none, needs {db_engine.HEAD_REVISION})" in text
    assert "images         unknown (the database has no glimpse schema)" in text


def test_the_image_cache_is_reported_from_its_directory(
        data_dir: Path, live: Incarnation) -> None:
    from glimpse.cache.local import LocalCache

    assert survey(settings_for(data_dir)).cache is None
    settings = settings_for(data_dir, image_cache_dir=Path("cache"), image_cache_max_size=1 << 20)
    report = survey(settings)
    assert report.cache is not None and (report.cache.size, report.cache.images) == (0, 0)
    assert any("does not exist yet" in w for w in report.warnings)
    cache = LocalCache(data_dir / "cache", 1 << 20)
    for n in range(2):
        image_id = str(uuid.UUID(int=n + 1))
        (cache.root / "entries" / image_id).write_bytes(b"x" * 1000)
        (cache.root / "entries" / f"{image_id}.json").write_text("{}")
    cache.queue(str(uuid.UUID(int=9)))
    report = survey(settings)
    assert report.cache is not None
    assert (report.cache.images, report.cache.size, report.cache.queued) == (2, 2000, 1)
    text = status_cli.render(report)
    assert "image cache    2 image(s), 2.0 KiB of 1.0 MiB, 1 queued" in text
    assert json.loads(json.dumps(as_document(report)))["cache"] == {
        "dir": str(data_dir / "cache"), "max_size": 1 << 20, "size": 2000, "images": 2,
        "queued": 1}
