"""The single-node Ceph that ``scripts/ceph start`` runs: how tests reach it.

Its configuration file and keyrings live in the script's state directory (``$CEPH_DIR``,
default ``.ceph`` in the repository); they are fixtures of a throwaway loopback cluster, not
secrets. Tests look at the pool directly as the admin, past glimpse.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("CEPH_DIR", ROOT / ".ceph"))
CONF = STATE / "ceph.conf"
POOL = os.environ.get("CEPH_POOL", "glimpse-images")
USER = "glimpse"
KEYRING = STATE / f"ceph.client.{USER}.keyring"
ADMIN_KEYRING = STATE / "ceph.client.admin.keyring"
SCRIPT = ROOT / "scripts" / "ceph"


def available() -> bool:
    """Whether the bindings import and the cluster answers (asked once per process)."""
    return _probe() is None


@functools.cache
def _probe() -> str | None:
    try:
        import rados  # noqa: F401  (Debian's bindings, linked by scripts/ceph bindings)
        import rbd  # noqa: F401
    except ImportError:
        return "the rados/rbd bindings do not import: run scripts/ceph bindings"
    if not CONF.exists():
        return f"no Ceph configuration at {CONF}: run scripts/ceph start"
    try:
        with admin_ioctx(timeout=5):
            pass
    except Exception as exc:
        return f"Ceph does not answer ({exc.__class__.__name__}): run scripts/ceph start"
    return None


def require() -> None:
    """Skip the calling test when no Ceph answers (CI fails on skips)."""
    reason = _probe()
    if reason is not None:
        pytest.skip(reason)


def store_options(**extra: object) -> dict[str, str]:
    """A store table (as settings hold it) for glimpse's user on the test pool."""
    options = {"pool": POOL, "user": USER, "keyring": str(KEYRING), "conf_file": str(CONF)}
    return {**options, **{k: str(v) for k, v in extra.items()}}


def store_env(**extra: object) -> dict[str, str]:
    """Settings making an RBD store on the test pool the default."""
    settings = {"default_store": "rbd", "default_store_driver": "rbd"}
    for name, value in store_options(**extra).items():
        settings[f"default_store_{name}"] = value
    return settings


@contextlib.contextmanager
def admin_ioctx(timeout: int = 30) -> Iterator[Any]:
    """The test pool, as the cluster's admin (bounded waits: a stopped OSD is an error)."""
    import rados

    cluster = rados.Rados(rados_id="admin", conffile=str(CONF), conf={
        "keyring": str(ADMIN_KEYRING), "rados_osd_op_timeout": str(timeout),
        "rados_mon_op_timeout": str(timeout), "client_mount_timeout": str(timeout)})
    cluster.connect(timeout=timeout)
    try:
        ioctx = cluster.open_ioctx(POOL)
        try:
            yield ioctx
        finally:
            ioctx.close()
    finally:
        cluster.shutdown()


def images(containing: str = "") -> list[str]:
    """The RBD images of the test pool whose names hold ``containing``, and those in its
    trash."""
    import rbd

    with admin_ioctx() as ioctx:
        names = [n for n in rbd.RBD().list(ioctx) if containing in n]
        names += [f"trash:{t['name']}" for t in rbd.RBD().trash_list(ioctx)
                  if containing in t["name"]]
    return names


def fsid() -> str:
    return (STATE / "fsid").read_text().strip()


def daemon(action: str, which: str = "") -> None:
    """``scripts/ceph stop osd``, ``scripts/ceph start``...: what the fault tests do to Ceph."""
    subprocess.run([str(SCRIPT), action, *([which] if which else [])], check=True,
                   stdout=subprocess.DEVNULL, timeout=180)


def daemon_pid(which: str) -> int | None:
    """The process id of a daemon ``scripts/ceph start`` runs ("mon", "osd"), if recorded
    (the benchmark counts the OSD's CPU time)."""
    try:
        return int((STATE / "run" / f"{which}.pid").read_text())
    except (OSError, ValueError):
        return None
