"""Timing and memory of a child process (and its process tree), and summaries of repeated runs."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Measured:
    seconds: float
    returncode: int
    stdout: bytes
    stderr: bytes
    tree_peak_rss_mb: float  # sampled sum of VmRSS over the process and its descendants
    # Kernel-kept peak RSS (VmHWM) per command name, largest process of that name, read while it ran.
    # (wait4's ru_maxrss is not used: Linux carries the forking parent's RSS into it across exec.)
    peak_by_command: dict[str, float] = field(default_factory=dict)

    def peak_of(self, command: str) -> float:
        return self.peak_by_command.get(command, float("nan"))


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    children = [int(c) for c in handle.read().split()]
            except OSError:
                continue
            found += children
            queue += children
    return found


def _status(pid: int) -> tuple[str, int, int]:
    """(command name, VmRSS kB, VmHWM kB) of a live process; zeros when it is gone."""
    name, rss, hwm = "", 0, 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("Name:"):
                    name = line.split()[1]
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return name, rss, hwm


def own_peak_rss_mb() -> float:
    """This process's peak RSS since it started (exec), from the kernel."""
    return _status(os.getpid())[2] / 1024


def run(argv: list[str], env: dict | None = None, stdout=subprocess.PIPE, sample_s: float = 0.05) -> Measured:
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=env)
    peak = [0]
    by_command: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            total = 0
            for pid in [process.pid, *_descendants(process.pid)]:
                name, rss, hwm = _status(pid)
                total += rss
                if name:
                    by_command[name] = max(by_command.get(name, 0), hwm)
            peak[0] = max(peak[0], total)
            done.wait(sample_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks, err_chunks = [], []
    readers = []
    for stream, sink in ((process.stdout, out_chunks), (process.stderr, err_chunks)):
        if stream is not None:
            reader = threading.Thread(target=lambda s=stream, k=sink: k.append(s.read()), daemon=True)
            reader.start()
            readers.append(reader)
    for reader in readers:
        reader.join()
    _pid, status = os.waitpid(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    return Measured(
        seconds=seconds,
        returncode=process.returncode,
        stdout=b"".join(out_chunks),
        stderr=b"".join(err_chunks),
        tree_peak_rss_mb=peak[0] / 1024,
        peak_by_command={name: kb / 1024 for name, kb in by_command.items()},
    )


@dataclass
class Series:
    label: str
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self) -> str:
        if not self.values:
            return "-"
        return f"{min(self.values):.2f}-{max(self.values):.2f}"

    def row(self, unit: str = "s") -> str:
        return f"| {self.label} | {self.median:.2f} {unit} | {self.spread()} | {len(self.values)} |"


def ratio(numerator: Series, denominator: Series) -> float:
    return numerator.median / denominator.median if denominator.values and numerator.values else float("nan")


def paired_ratios(numerator: Series, denominator: Series) -> Series:
    """Per-repetition ratios (the two ran next to each other), whose median is steadier under load."""
    series = Series(f"{numerator.label} / {denominator.label}")
    for top, bottom in zip(numerator.values, denominator.values, strict=True):
        series.add(top / bottom)
    return series
