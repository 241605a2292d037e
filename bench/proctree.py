"""Server process-tree accounting from /proc (Linux): find the server by its listening port,
sum the CPU time and memory of its whole tree, and the machine's busy CPU time."""

from __future__ import annotations

import os
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
TCP_LISTEN = "0A"


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode("latin-1")
    return data[data.rindex(")") + 2 :].split()


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def parent_of(pid: int) -> int | None:
    try:
        return int(_stat(pid)[1])
    except (OSError, ValueError, IndexError):
        return None


def tree(root: int) -> list[int]:
    """root and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        ppid = parent_of(pid)
        if ppid is not None:
            children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _listen_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == TCP_LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{cols[9]}]")
        except OSError:
            continue
    return inodes


def server_pid(port: int) -> int | None:
    """The topmost process (of its tree) holding a listening socket on TCP `port`."""
    inodes = _listen_inodes(port)
    if not inodes:
        return None
    holders: set[int] = set()
    for pid in _pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    holders.add(pid)
                    break
            except OSError:
                continue
    tops = sorted(p for p in holders if parent_of(p) not in holders)
    return tops[0] if tops else (min(holders) if holders else None)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of the live tree: utime+stime, plus cutime+cstime (children already reaped
    by a process of the tree), so a worker that exits meanwhile is still counted once."""
    ticks = 0
    for pid in tree(root):
        try:
            f = _stat(pid)
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / CLK_TCK


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (all CPUs)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:9]]
    return (sum(vals) - vals[3] - vals[4]) / CLK_TCK  # minus idle and iowait


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        except (OSError, ValueError, IndexError):
            continue
    return total


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total


class CpuMeter:
    """Wall time and CPU seconds (server tree, this client process, everything else)
    around one measured run: `with CpuMeter(pid) as m: ...; m.metrics()`."""

    def __init__(self, server_root: int | None) -> None:
        self.root = server_root
        self.wall = self.server = self.client = self.other = 0.0

    def _server(self) -> float:
        return tree_cpu_seconds(self.root) if self.root else 0.0

    def __enter__(self) -> CpuMeter:
        self._s0 = self._server()
        self._c0 = time.process_time()
        self._m0 = machine_busy_seconds()
        self._w0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w0
        self.client = time.process_time() - self._c0
        self.server = self._server() - self._s0
        busy = machine_busy_seconds() - self._m0
        self.other = max(0.0, busy - self.client - self.server)

    def metrics(self) -> dict[str, float]:
        out = {"cli_cpu_s": self.client, "other_cpu_s": self.other}
        if self.root:
            out["srv_cpu_s"] = self.server
        return out


class MemorySampler(threading.Thread):
    """Peak RSS (sum over the tree, every `interval` s) and peak PSS (every 5th sample, as
    smaps_rollup costs more) of a process tree; the tree is re-listed twice a second."""

    def __init__(self, root: int, interval: float = 0.02) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.root, self.interval = root, interval
        self._stop_event = threading.Event()
        self.rss_before_kib = rss_kib(tree(root))
        self.peak_rss_kib = self.rss_before_kib
        self.peak_pss_kib = 0
        self.samples = 0

    def run(self) -> None:
        pids, listed = tree(self.root), time.monotonic()
        while not self._stop_event.is_set():
            if time.monotonic() - listed > 0.5:
                pids, listed = tree(self.root), time.monotonic()
            self.peak_rss_kib = max(self.peak_rss_kib, rss_kib(pids))
            if self.samples % 5 == 0:
                self.peak_pss_kib = max(self.peak_pss_kib, pss_kib(pids))
            self.samples += 1
            self._stop_event.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join()
