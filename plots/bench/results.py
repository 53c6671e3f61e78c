"""Results files: one JSON-lines file per run, written atomically, never overwritten.

    plots/results/<date>-<time>-<device>-<preset>.jsonl

Where the lab writes: RESULTS_DIR and FIGURES_DIR are the working folders (git ignores them: a run or a draw
never changes a tracked file); PUBLISHED_DIR holds the runs, predictions and figures the README shows, and
only `python -m plots publish` (make publish) writes it. A device's folder is named by its slug
(cpu.machine.cpu_slug: model, vector ISA, CPUID family and model, cores), so two CPUs never share one.

Line 1 is the metadata record ({"type": "meta", ...}: machine, versions, threads, git commit, date,
the sweep, the timing policy); then one {"type": "ceiling", ...} per measured ceiling, then one
{"type": "result", ...} per (op, implementation, dtype, n, k). Records are appended to a temporary
file under plots/results/tmp/ while the run goes, and the file is moved into place with os.replace
when it ends, under a name no other file has.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cpu import machine as cpu_machine
from plots.bench.machine import ROOT

#: Every run's results file and the static model's predictions (git-ignored).
RESULTS_DIR = ROOT / "plots" / "results"
#: What `python -m plots draw` draws: plots/figures/<device slug>/ and plots/figures/<gpu>-model/ (git-ignored).
FIGURES_DIR = ROOT / "plots" / "figures"
#: The published runs (results/), their figures and the model's (tracked; written by `python -m plots publish`).
PUBLISHED_DIR = ROOT / "plots" / "published"


class Writer:
    """Append records to a temporary file; `close()` publishes it under a fresh name."""

    def __init__(self, directory: Path, stem: str):
        self.directory = Path(directory)
        self.stem = stem
        tmp_dir = self.directory / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_dir / f"{stem}.{os.getpid()}.jsonl.partial"
        self._f = open(self.tmp, "w")

    def write(self, record: dict):
        self._f.write(json.dumps(record, default=_json_default) + "\n")
        self._f.flush()

    def close(self) -> Path:
        self._f.close()
        path = unique_path(self.directory, self.stem)
        os.replace(self.tmp, path)
        return path

    def abandon(self):
        """Leave the partial file where it is (for a look after a crash); nothing is published."""
        self._f.close()


def unique_path(directory: Path, stem: str) -> Path:
    path, i = Path(directory) / f"{stem}.jsonl", 1
    while path.exists():
        i += 1
        path = Path(directory) / f"{stem}-{i}.jsonl"
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class Run:
    """One results file."""

    path: Path
    meta: dict
    ceilings: list = field(default_factory=list)
    rows: list = field(default_factory=list)

    def device_name(self, device: str) -> str | None:
        """'cpu' or 'gpu' -> the device's name in this run (None if the run has none); a CPU's with its
        cores and vector ISA (cpu.machine.cpu_name)."""
        info = self.meta.get(device)
        if not info:
            return None
        return cpu_machine.cpu_name(info) if device == "cpu" and "model" in info else info["name"]

    def device_slug(self, device: str) -> str | None:
        """The folder name of this run's device: a CPU's from its recorded model, ISA and CPUID
        (cpu.machine.cpu_slug, so files written before the ISA joined the slug get it too)."""
        info = self.meta.get(device)
        if not info:
            return None
        return cpu_machine.cpu_slug(info) if device == "cpu" and "model" in info else info["slug"]

    def devices(self) -> list[str]:
        """'cpu' and/or 'gpu': the devices this run has measured results for."""
        return sorted({r["device"] for r in self.rows if r.get("status") == "ok"})


def load(path, log=None) -> Run:
    """The run of the results file at `path`. A record that is not JSON (a line cut short by a run that
    died) is left out with a message naming the file and line; ValueError when the first line is not
    the metadata record, OSError when the file cannot be read."""
    lines = Path(path).read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == 1:
                raise ValueError(f"{path}:1: not a results file (the metadata record does not read: {e})") from None
            print(f"{path}:{number}: a bad record left out ({e.msg} at column {e.colno}: "
                  f"{line[:60]!r}{' ...' if len(line) > 60 else ''})", file=log or sys.stderr)
    if not records or not isinstance(records[0], dict) or records[0].get("type") != "meta":
        raise ValueError(f"{path}:1: not a results file (first line is not a metadata record)")
    run = Run(Path(path), records[0])
    for r in records[1:]:
        (run.ceilings if r.get("type") == "ceiling" else run.rows).append(r)
    return run


def newest_per_device(directory: Path = RESULTS_DIR) -> list[tuple[Run, str]]:
    """(run, 'cpu' or 'gpu') for the newest results file of each device name found in `directory`, and
    separately the newest layer run (its rows have a `shape`) of each device."""
    newest: dict[str, tuple[str, Run, str]] = {}
    for path in sorted(Path(directory).glob("*.jsonl")):
        try:
            run = load(path)
        except ValueError as e:  # not a results file: said, and the others drawn
            print(f"skipped: {e}", file=sys.stderr)
            continue
        for device in run.devices():
            name = (run.device_slug(device), any("shape" in r for r in run.rows))
            key = (run.meta.get("date", ""), path.name)
            if name not in newest or key > newest[name][0]:
                newest[name] = (key, run, device)
    return [(run, device) for _, run, device in newest.values()]
