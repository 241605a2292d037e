"""The benchmark scenarios. Each run returns {metric: value}; every check that fails raises
BenchError, which stops the whole benchmark."""

from __future__ import annotations

import hashlib
import math
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TypeVar

import proctree
from apis import BenchError, ImageApi, ImageMeta, expect, make_api
from rawclient import Conn, Endpoint, closed_loop

MiB = 1 << 20
LIST_SET = "list10k"  # value of the bench_set property that tags the listing set
TMP_PROP = "bench_tmp"  # property on every image the harness deletes again

# scenario -> [(metric, better)]: "hi" higher is better, "lo" lower is better, "" informative.
METRICS: dict[str, list[tuple[str, str]]] = {
    "upload_1g": [("MiB/s", "hi"), ("seconds", "lo")],
    "download_1g": [("MiB/s", "hi"), ("seconds", "lo"), ("rss_peak_MiB", "lo")],
    "upload_small": [("images/s", "hi"), ("seconds", "lo")],
    "head_rps": [("req/s", "hi"), ("p50_ms", "lo"), ("p99_ms", "lo"), ("srv_us/req", "lo"),
                 ("requests", ""), ("reconnects", "")],
    "list_1000": [
        ("page_p50_ms", "lo"),
        ("total_s", "lo"),
        ("page_max_ms", "lo"),
        ("pages", ""),
        ("images", ""),
    ],
    "server_rss": [("rss_peak_MiB", "lo"), ("pss_peak_MiB", "lo"), ("rss_before_MiB", "lo")],
}
# ks_validations: token validations Keystone served during the run (keystone-mode targets, with
# --keystone-log).
CPU_METRICS = [("srv_cpu_s", "lo"), ("cli_cpu_s", ""), ("other_cpu_s", ""),
               ("ks_validations", "")]
SCENARIOS = list(METRICS)
_T = TypeVar("_T")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def short_tag() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Settings:
    data_dir: str
    big_mib: int = 1024
    small_count: int = 200
    small_kib: int = 64
    small_threads: int = 8
    head_connections: int = 32
    head_seconds: float = 10.0
    list_images: int = 10_000
    list_limit: int = 1000
    multihash: str = "sha512"
    populate_threads: int = 8


@dataclass(frozen=True)
class Content:
    """What an image's data must be: its size, md5 (`checksum`) and multihash digest."""

    size: int
    md5: str
    multihash: str  # hex digest with Settings.multihash

    @classmethod
    def of(cls, data: bytes, algorithm: str) -> Content:
        md5 = hashlib.md5(data).hexdigest()
        return cls(len(data), md5, hashlib.new(algorithm, data).hexdigest())


@dataclass(frozen=True)
class Blob(Content):
    path: str


def shown(name: str, value: str) -> str:
    """A header's value as the output may show it: a token only as its hash's first characters
    (as glimpse's logs name one)."""
    if name.lower() in ("x-auth-token", "x-service-token"):
        return f"<token sha256:{hashlib.sha256(value.encode()).hexdigest()[:8]}>"
    return value


class Target:
    """One server under test, and the images the harness made on it."""

    def __init__(
        self, label: str, url: str, api: str, headers: dict[str, str], pid: int | None
    ) -> None:
        self.label = label
        self.url = url.rstrip("/")
        self.endpoint = Endpoint.parse(self.url)
        self.api: ImageApi = make_api(api, self.endpoint.prefix)
        self.headers = headers
        self.pid = pid if pid is not None else proctree.server_pid(self.endpoint.port)
        self.big_id: str | None = None
        self.big_verified = False
        self.probe_id: str | None = None
        self._tmp: set[str] = set()
        self.lock = threading.Lock()

    def conn(self) -> Conn:
        return Conn(self.endpoint, self.headers)

    def describe(self) -> str:
        names = ", ".join(f"{k}: {shown(k, v)}" for k, v in self.headers.items()) or "none"
        return (
            f"{self.label}: {self.url} (API {self.api.name}, server pid {self.pid or 'unknown'}, "
            f"headers {names})"
        )

    def track(self, image_id: str) -> None:
        with self.lock:
            self._tmp.add(image_id)

    def untrack(self, image_id: str) -> None:
        with self.lock:
            self._tmp.discard(image_id)

    def tracked(self) -> list[str]:
        with self.lock:
            return sorted(self._tmp)

    def delete_images(self, ids: list[str], threads: int = 4) -> None:
        """Delete (and untrack) images, a few connections in parallel."""
        run_parallel(threads, ids, lambda conn, image_id: self._delete(conn, image_id), self.conn)

    def _delete(self, conn: Conn, image_id: str) -> None:
        self.api.delete(conn, image_id)
        self.untrack(image_id)


def run_parallel(
    threads: int,
    items: list[_T],
    work: Callable[[Conn, _T], object],
    connect: Callable[[], Conn],
) -> None:
    """Give `items` to `threads` workers, each with its own keep-alive connection; the first
    exception stops the others and is raised again here."""
    lock = threading.Lock()
    todo = iter(items)
    errors: list[BaseException] = []

    def worker() -> None:
        with connect() as conn:
            while not errors:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                try:
                    work(conn, item)
                except BaseException as exc:  # re-raised in the calling thread
                    errors.append(exc)
                    return

    pool = [threading.Thread(target=worker) for _ in range(max(1, min(threads, len(items))))]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------------- test data


def big_blob(settings: Settings) -> Blob:
    """The cached pseudo-random file of --big-mib MiB, its md5 and multihash digest (made
    once, reused; a file of an earlier run is read again to hash it with another algorithm)."""
    os.makedirs(settings.data_dir, exist_ok=True)
    size = settings.big_mib * MiB
    algorithm = settings.multihash
    path = os.path.join(settings.data_dir, f"blob-{settings.big_mib}mib.bin")
    sidecar = path + ".md5"  # "md5 size mtime_ns [algorithm:hexdigest ...]"
    known: dict[str, str] = {}
    try:
        with open(sidecar) as f:
            md5, recorded_size, recorded_mtime, *others = f.read().split()
        st = os.stat(path)
        if st.st_size == size == int(recorded_size) and st.st_mtime_ns == int(recorded_mtime):
            known = dict(item.split(":", 1) for item in others)
            known["md5"] = md5
    except (OSError, ValueError):
        pass
    if "md5" in known and algorithm not in known:
        log(f"hashing {path} with {algorithm} (cached for later runs) ...")
        digest = hashlib.new(algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(4 * MiB):
                digest.update(chunk)
        known[algorithm] = digest.hexdigest()
    elif "md5" not in known:
        log(f"generating {path} ({settings.big_mib} MiB, cached for later runs) ...")
        rng = random.Random(0x6C696D7073)
        digests = {"md5": hashlib.md5(), algorithm: hashlib.new(algorithm)}
        block = 4 * MiB
        with open(path + ".part", "wb") as f:
            left = size
            while left:
                chunk = rng.randbytes(min(block, left))
                for d in digests.values():
                    d.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        os.replace(path + ".part", path)
        known = {name: d.hexdigest() for name, d in digests.items()}
    else:
        return Blob(size, known["md5"], known[algorithm], path)
    st = os.stat(path)
    with open(sidecar, "w") as f:
        extra = " ".join(f"{k}:{v}" for k, v in sorted(known.items()) if k != "md5")
        f.write(f"{known['md5']} {st.st_size} {st.st_mtime_ns} {extra}\n")
    return Blob(size, known["md5"], known[algorithm], path)


def check_image(t: Target, meta: ImageMeta, content: Content, algorithm: str, what: str) -> None:
    """Status active, size, md5 checksum and, where the API shows it, the multihash: the
    same algorithm on every target, and the right digest."""
    problems = []
    if meta.status != "active":
        problems.append(f"status {meta.status!r}")
    if meta.size != content.size:
        problems.append(f"size {meta.size} != {content.size}")
    if meta.checksum != content.md5:
        problems.append(f"checksum {meta.checksum} != {content.md5}")
    if t.api.shows_multihash:
        if meta.os_hash_algo != algorithm:
            problems.append(f"os_hash_algo {meta.os_hash_algo!r} != {algorithm!r} (--multihash)")
        elif meta.os_hash_value != content.multihash:
            problems.append(f"os_hash_value {meta.os_hash_value} != {content.multihash}")
    if problems:
        raise BenchError(f"{t.label} {what}: image {meta.id}: {', '.join(problems)}")


def verify_stored(
    t: Target, conn: Conn, image_id: str, content: Content, algorithm: str, what: str
) -> ImageMeta:
    """Read the image's metadata back and check it (check_image)."""
    meta = t.api.meta(conn, image_id)
    check_image(t, meta, content, algorithm, what)
    return meta


def memory_sampler(pid: int | None) -> AbstractContextManager[proctree.MemorySampler | None]:
    return proctree.MemorySampler(pid) if pid else nullcontext()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# --------------------------------------------------------------------------------- scenarios


class Runner:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._blob: Blob | None = None

    @property
    def blob(self) -> Blob:
        if self._blob is None:
            self._blob = big_blob(self.s)
        return self._blob

    def run(self, scenario: str, t: Target) -> dict[str, float]:
        return getattr(self, scenario)(t)  # type: ignore[no-any-return]

    # upload_1g (server_rss is measured during it) ------------------------------------------

    def upload_1g(self, t: Target) -> dict[str, float]:
        blob = self.blob
        with t.conn() as conn:
            with memory_sampler(t.pid) as sampler, proctree.CpuMeter(t.pid) as cpu:
                answer = t.api.upload_new(
                    conn, f"bench-big-{short_tag()}", {TMP_PROP: "big"}, file=blob.path
                )
            t.track(answer.id)
            if answer.status is not None:  # v1 answers with the stored image
                check_image(t, answer, blob, self.s.multihash, "upload_1g answer")
            verify_stored(t, conn, answer.id, blob, self.s.multihash, "upload_1g")
            if t.big_id:  # keep one big image per target for download_1g
                t.api.delete(conn, t.big_id)
                t.untrack(t.big_id)
            t.big_id, t.big_verified = answer.id, False
        out = {"MiB/s": blob.size / MiB / cpu.wall, "seconds": cpu.wall, **cpu.metrics()}
        if sampler:
            out["rss_peak_MiB"] = sampler.peak_rss_kib / 1024
            out["pss_peak_MiB"] = sampler.peak_pss_kib / 1024
            out["rss_before_MiB"] = sampler.rss_before_kib / 1024
        return out

    # download_1g -----------------------------------------------------------------------------

    def download_1g(self, t: Target) -> dict[str, float]:
        blob = self.blob
        if t.big_id is None:
            log(f"  {t.label}: uploading the big image for download_1g (untimed)")
            self.upload_1g(t)
        assert t.big_id is not None
        path = t.api.data_path(t.big_id)
        with t.conn() as conn:
            if not t.big_verified:  # once per target, untimed: the bytes are the right ones
                digest = hashlib.md5()
                resp = expect(
                    conn.request("GET", path, keep_body=False, hasher=digest),
                    (200,),
                    "download (verification)",
                )
                if resp.nbytes != blob.size or digest.hexdigest() != blob.md5:
                    raise BenchError(
                        f"{t.label} download_1g: got {resp.nbytes} bytes with md5 "
                        f"{digest.hexdigest()}, expected {blob.size} bytes with md5 {blob.md5}"
                    )
                for header in ("content-md5", "x-image-meta-checksum"):
                    value = resp.headers.get(header)
                    if value and value != blob.md5:
                        raise BenchError(f"{t.label} download_1g: {header} {value} != {blob.md5}")
                t.big_verified = True
                log(f"  {t.label}: download md5 verified ({blob.md5})")
            with memory_sampler(t.pid) as sampler, proctree.CpuMeter(t.pid) as cpu:
                resp = expect(conn.request("GET", path, keep_body=False), (200,), "download")
        if resp.nbytes != blob.size:
            raise BenchError(f"{t.label} download_1g: {resp.nbytes} bytes, expected {blob.size}")
        out = {"MiB/s": blob.size / MiB / cpu.wall, "seconds": cpu.wall, **cpu.metrics()}
        if sampler:
            out["rss_peak_MiB"] = sampler.peak_rss_kib / 1024
        return out

    # upload_small ----------------------------------------------------------------------------

    def upload_small(self, t: Target) -> dict[str, float]:
        n, size = self.s.small_count, self.s.small_kib * 1024
        base = os.urandom(size)
        payloads = [i.to_bytes(8, "big") + base[8:] for i in range(n)]
        contents = [Content.of(p, self.s.multihash) for p in payloads]
        answers: list[ImageMeta | None] = [None] * n  # filled by the upload threads
        run = short_tag()

        def upload(conn: Conn, i: int) -> None:
            answer = t.api.upload_new(
                conn, f"bench-small-{run}-{i}", {TMP_PROP: "small"}, body=payloads[i]
            )
            t.track(answer.id)
            answers[i] = answer

        with proctree.CpuMeter(t.pid) as cpu:
            run_parallel(self.s.small_threads, list(range(n)), upload, t.conn)
        ids = []
        for i, answer in enumerate(answers):  # untimed checks
            if answer is None:
                raise BenchError(f"{t.label} upload_small: image {i} has no answer")
            if answer.status is not None:  # v1: every answer carries the stored image
                check_image(t, answer, contents[i], self.s.multihash, "upload_small answer")
            ids.append(answer.id)
        if len(set(ids)) != n:
            raise BenchError(f"{t.label} upload_small: {n - len(set(ids))} duplicate image ids")
        with t.conn() as conn:
            for i in random.sample(range(n), min(5, n)):
                verify_stored(t, conn, ids[i], contents[i], self.s.multihash, "upload_small")
        t.delete_images(ids)
        return {"images/s": n / cpu.wall, "seconds": cpu.wall, **cpu.metrics()}

    # head_rps --------------------------------------------------------------------------------

    def _probe(self, t: Target) -> str:
        if t.probe_id is None:
            data = b"glimpse-bench probe image " * 40
            props = {TMP_PROP: "probe", "p1": "one", "p2": "two", "p3": "three", "p4": "four"}
            with t.conn() as conn:
                answer = t.api.upload_new(conn, f"bench-probe-{short_tag()}", props, body=data)
                t.track(answer.id)
                verify_stored(
                    t, conn, answer.id, Content.of(data, self.s.multihash), self.s.multihash,
                    "probe",
                )
            t.probe_id = answer.id
        return t.probe_id

    def head_rps(self, t: Target) -> dict[str, float]:
        method, path = t.api.meta_request(self._probe(t))
        with t.conn() as conn:  # warm-up, and the request must work before it is timed
            for _ in range(20):
                expect(conn.request(method, path), (200,), f"head_rps warm-up {method}")
        with proctree.CpuMeter(t.pid) as cpu:
            res = closed_loop(
                t.endpoint, method, path, t.headers, self.s.head_connections, self.s.head_seconds
            )
        bad = {code: k for code, k in res.statuses.items() if code != 200}
        if bad or res.errors:
            raise BenchError(f"{t.label} head_rps: non-200 answers {bad}, errors {res.errors[:3]}")
        if not res.latencies:
            raise BenchError(f"{t.label} head_rps: no request completed")
        lat = res.latencies
        cpu_metrics = cpu.metrics()
        srv_us = cpu_metrics.get("srv_cpu_s")
        return {
            "req/s": len(lat) / res.wall,
            "p50_ms": percentile(lat, 50) * 1e3,
            "p99_ms": percentile(lat, 99) * 1e3,
            # The server's CPU per answer: what a request costs it, steadier than wall time
            # on a shared machine.
            **({"srv_us/req": srv_us * 1e6 / len(lat)} if srv_us is not None else {}),
            "requests": float(len(lat)),
            # Answers after which the server closed the connection (each costs a reconnect).
            "reconnects": float(res.reconnects),
            **cpu_metrics,
        }

    # list_1000 -------------------------------------------------------------------------------

    def _walk(self, t: Target, conn: Conn) -> tuple[list[float], int, int]:
        """Page through the whole list: page latencies, images, images of the listing set."""
        seen: set[str] = set()
        page_s: list[float] = []
        tagged = 0
        for resp, images in t.api.pages(conn, self.s.list_limit):
            page_s.append(resp.elapsed)
            for image in images:
                if image.id in seen:
                    raise BenchError(f"{t.label} list: image {image.id} listed twice (paging)")
                seen.add(image.id)
                tagged += image.properties.get("bench_set") == LIST_SET
            if len(page_s) > 1_000_000:
                raise BenchError(f"{t.label} list: paging does not end")
        return page_s, len(seen), tagged

    def populate(self, t: Target) -> None:
        """Make sure --list-images queued images of the listing set exist; they stay on the
        server for later runs, and only the missing ones are made."""
        with t.conn() as conn:
            _, total, have = self._walk(t, conn)
        missing = self.s.list_images - have
        if missing <= 0:
            log(f"  {t.label}: listing set present ({have} tagged of {total} images)")
            return
        log(f"  {t.label}: creating {missing} queued images for the listing set ...")
        start = time.perf_counter()
        run = short_tag()

        created: list[str] = []

        def create(conn: Conn, i: int) -> None:
            image_id = t.api.create_queued(
                conn,
                f"bench-list-{run}-{i:05d}",
                {
                    "bench_set": LIST_SET,
                    "bench_idx": str(i),
                    "bench_os": "linux",
                    "bench_arch": "x86_64",
                    "bench_team": f"team-{i % 17}",
                },
            )
            with t.lock:
                created.append(image_id)

        # One first, to learn whether this identity lists its own images at all (glimpse's
        # anonymous admin lists public images only) before making thousands it cannot see.
        for batch in (range(1), range(1, missing)):
            if not batch:
                continue
            run_parallel(self.s.populate_threads, list(batch), create, t.conn)
            with t.conn() as conn:
                _, total, now = self._walk(t, conn)
            if now < have + len(created):
                if len(created) == 1:  # do not leave an image behind that nobody lists
                    with t.conn() as conn:
                        t.api.delete(conn, created[0])
                raise BenchError(
                    f"{t.label} list_1000: {len(created)} listing-set images created but only"
                    f" {now - have} more are listed: this identity does not see its own images"
                    " (give identity headers, e.g. --header 'X-Tenant-Id: bench')"
                )
        log(f"  {t.label}: created {missing} in {time.perf_counter() - start:.1f} s")

    def list_1000(self, t: Target) -> dict[str, float]:
        with t.conn() as conn, proctree.CpuMeter(t.pid) as cpu:
            page_s, total, tagged = self._walk(t, conn)
        if tagged < self.s.list_images:
            raise BenchError(
                f"{t.label} list_1000: {tagged} listing-set images visible, expected "
                f"{self.s.list_images} (are the identity headers the ones used to create them?)"
            )
        return {
            "page_p50_ms": statistics.median(page_s) * 1e3,
            "total_s": cpu.wall,
            "page_max_ms": max(page_s) * 1e3,
            "pages": float(len(page_s)),
            "images": float(total),
            **cpu.metrics(),
        }


@dataclass
class Samples:
    """scenario -> target label -> metric -> samples"""

    data: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    def add(self, scenario: str, label: str, metrics: dict[str, float]) -> None:
        per_target = self.data.setdefault(scenario, {}).setdefault(label, {})
        for k, v in metrics.items():
            per_target.setdefault(k, []).append(v)
