"""The GPU run (`make gpu-report PY=python3`): the preflight, then each step of `STEPS` in order of value, each in a
child process with its own time limit, into one folder with a manifest. A failed or timed-out step does not
stop the later ones; a step is skipped when its tool is missing or its limit no longer fits the time left.

    python -m plots.gpurun.report [--out DIR] [--total 480]   # the run (stops at once if the preflight fails)
    python -m plots.gpurun.report --dry-run                   # the plan: steps, limits, estimates, evidence
    python -m plots.gpurun.report --standin                   # the steps' device-free parts (make gpu-standin)

The folder (default plots/results/gpu-run-<date>-<device>/) holds a log per step, the results files of the
bench, ncu's CSV, the sanitizer logs, the plots, clocks.csv (SM and memory clocks, temperature, power, sampled
every second by nvidia-smi while the run goes) and manifest.json: versions, the GPU's name, driver and clocks, and
every step with its status (passed, failed, timed out, skipped with the reason), time and command.

The model's compiles are host work: they start at once in the background on every core (the `model` step), while
the device runs the tests, and are cached for the plots at the end (plots/model/child.py).

Time budget (8 minutes on one H100 with 16 cores), per step: the estimate and the evidence behind it are in
`STEPS`; `--dry-run` prints them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from plots.gpurun import counters, preflight, sanitize

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 480.0  # seconds: the whole run, preflight included
#: The preflight's time: measured here 15 s on 2 cores (most of it one numba.cuda compile and pytest's collection).
PREFLIGHT_ESTIMATE = 15.0
BENCH = ["--preset", "gpu-short", "--k", "3", "--k", "31", "--k", "511", "--exclude", "*:naive", "--exclude",
         "*:atomic", "--exclude", "*:tiled", "--no-progress"]


@dataclass
class Context:
    """What the steps' commands need: the interpreter, the run's folder, and what earlier steps left there."""

    python: str
    out: Path
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def results(self) -> str | None:
        """The bench's results file in the run's folder (None before the bench ran)."""
        found = sorted((self.out / "results").glob("*.jsonl"))
        return str(found[-1]) if found else None


@dataclass(frozen=True)
class Step:
    """One step of the run: commands (run in order, from the repository root), a time limit and an estimate."""

    name: str
    commands: Callable[[Context], list[list[str]]]
    limit: float  # seconds; the step is killed past it
    estimate: float  # seconds on one H100 with 16 cores
    evidence: str  # where the estimate comes from
    needs: tuple = ("device",)  # "device", and tools found by preflight.find_tool
    standin: Callable[[Context], list[list[str]]] | None = None  # its device-free part
    background: bool = False  # started at once, waited for before the step after the tests


def _py(ctx, *args):
    return [ctx.python, *args]


STEPS = (
    Step("versions", lambda c: [_py(c, "-m", "plots.model.oned", "--versions")], 30, 5,
         "measured here: 3 s (the NVVM probe compiles an empty kernel)", needs=(),
         standin=lambda c: [_py(c, "-m", "plots.model.oned", "--versions")]),
    Step("model", lambda c: [_py(c, "-m", "plots.model.oned")], 240, 90,
         "measured here: 324 numba.cuda configurations cold in 11 min on 2 workers of a shared 2-core machine "
         "(~4 min quiet); x 2/16 workers = 30-85 s; then cached. Host only: runs in the background", needs=(),
         standin=lambda c: [_py(c, "-m", "plots.model.resources", "--default", "--arch", "90", "--warn")],
         background=True),
    Step("tests", lambda c: [_py(c, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                                 "tests/test_gpu_device.py", f"--junitxml={c.out / 'tests.xml'}")], 180, 110,
         "116 tests: ~40 numba.cuda compiles at ~1.5 s (measured here: 1-2 s each), 1e8-element inputs made on the "
         "host (1.5 s each, 10 of them), windowed references (0.1-0.3 s here), 4 x 17 GB past 2^31",
         standin=lambda c: [_py(c, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu_device.py",
                                "tests/test_gpurun.py")]),
    Step("ncu", lambda c: [counters.ncu_command(preflight.find_tool("ncu"), str(c.out / "ncu.csv"), c.python)],
         90, 50, "10 profiled launches x 4 metrics (~2-3 replays each, ~1 s at n = 1e8) + start-up and compiles",
         needs=("device", "ncu"), standin=lambda c: [_py(c, "-m", "plots.gpurun.counters")]),
    Step("sanitize", lambda c: list(sanitize.commands(preflight.find_tool("compute-sanitizer"), c.python).values()),
         120, 70, "3 tools x (start-up, NVRTC of 4 .cu files: 0.15 s per module, ~35 small calls); racecheck the "
                  "slowest", needs=("device", "compute-sanitizer"),
         standin=lambda c: [_py(c, "-m", "plots.gpurun.sanitize")]),
    Step("bench", lambda c: [_py(c, "-m", "plots", "bench", *BENCH, "--results-dir", str(c.out / "results"))],
         180, 140, "12 (n, k) points + 16 layer points x ~10 implementations and baselines: 0.05 s timed + "
                   "warm-up + check each; the float64 reference at n = 1e8, k = 3 (3 s here) once per point"),
    Step("tune", lambda c: [_py(c, "-m", "plots.bench.tune", "--backend", "cupy", "--out",
                                str(c.out / "crossover_cupy.json"))], 60, 40,
         "the crossover sweep of the cupy auto step; only when its limit still fits"),
    Step("plots", lambda c: [*([_py(c, "-m", "plots", "draw", r, "--out", str(c.out))] if (r := c.results()) else []),
                             _py(c, "-m", "plots.model", *(["--measured", r] if r else []), "--out", str(c.out))],
         90, 30, "drawing: ~10 s here; the model's compiles cached by the model step", needs=("device",)),
)


def missing(step: Step, device: bool) -> str | None:
    """Why `step` cannot run here, or None."""
    for need in step.needs:
        if need == "device" and not device:
            return "no CUDA device"
        if need != "device" and not preflight.find_tool(need):
            return f"{need} not found"
    return None


def plan_table(steps=STEPS, device: bool = True) -> str:
    lines = [f"{'step':<9} {'limit':>6} {'est.':>5}  {'runs':<22} evidence"]
    for s in steps:
        why = missing(s, device)
        lines.append(f"{s.name:<9} {s.limit:>5.0f}s {s.estimate:>4.0f}s  {('skipped: ' + why) if why else 'yes':<22} "
                     f"{s.evidence}")
    total = PREFLIGHT_ESTIMATE + sum(s.estimate for s in steps if not s.background)
    lines.insert(1, f"{'preflight':<9} {90:>5}s {PREFLIGHT_ESTIMATE:>4.0f}s  {'yes':<22} measured here on 2 cores")
    lines.append(f"total estimate {total:.0f} s of {TOTAL:.0f} s (the model step runs beside the others)")
    return "\n".join(lines)


def run_commands(name: str, commands, limit: float, log: Path, env=None) -> dict:
    """Run `commands` in order within `limit` seconds in all, output to `log`: {status, seconds, rc}."""
    start, status, rc = time.monotonic(), "passed", 0
    with open(log, "w") as f:
        for cmd in commands:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            left = limit - (time.monotonic() - start)
            try:
                rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=max(left, 1),
                                    env=env).returncode
            except subprocess.TimeoutExpired:
                status, rc = "timed out", None
                break
            except OSError as e:  # the interpreter or tool is missing
                f.write(f"{e}\n")
                status, rc = "failed", None
                break
            if rc:
                status = "failed"
    return {"status": status, "seconds": round(time.monotonic() - start, 1), "rc": rc, "log": log.name,
            "commands": [" ".join(c) for c in commands]}


class Clocks:
    """nvidia-smi sampling the clocks, temperature and power every second into clocks.csv (where there is one)."""

    FIELDS = "timestamp,clocks.sm,clocks.mem,temperature.gpu,power.draw,utilization.gpu"

    def __init__(self, path: Path):
        smi = shutil.which("nvidia-smi")
        self.path, self.proc = path, None
        if smi:
            self.proc = subprocess.Popen([smi, f"--query-gpu={self.FIELDS}", "--format=csv,nounits", "-l", "1"],
                                         stdout=open(path, "w"), stderr=subprocess.DEVNULL)

    def stop(self) -> dict:
        """Stop sampling; min, median and max SM clock (MHz) and the samples' count."""
        if self.proc is None:
            return {"sampled": False, "reason": "nvidia-smi not found"}
        self.proc.terminate()
        self.proc.wait()
        sm = sorted(float(r.split(",")[1]) for r in self.path.read_text().splitlines()[1:]
                    if r.count(",") >= 5 and r.split(",")[1].strip().replace(".", "").isdigit())
        if not sm:
            return {"sampled": True, "samples": 0}
        return {"sampled": True, "samples": len(sm), "sm_mhz_min": sm[0], "sm_mhz_median": sm[len(sm) // 2],
                "sm_mhz_max": sm[-1]}


def gpu_name() -> str:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "no-gpu"
    q = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True,
                       text=True)
    return q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else "unknown-gpu"


def run(args) -> int:
    ctx = Context(args.python, Path(args.out))
    ctx.out.mkdir(parents=True, exist_ok=True)
    manifest = {"started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "host": platform.node(), "gpu": gpu_name(), "python": args.python, "standin": args.standin,
                "total_s": args.total, "steps": {}}
    write = lambda: (ctx.out / "manifest.json").write_text(json.dumps(manifest, indent=1))  # noqa: E731
    start = time.monotonic()
    pre = run_commands("preflight", [_py(ctx, "-m", "plots.gpurun.preflight", "--out", str(ctx.out))], 90,
                       ctx.out / "preflight.log")
    manifest["steps"]["preflight"] = pre
    print(f"preflight: {pre['status']} ({pre['seconds']} s)", flush=True)
    write()
    if pre["status"] != "passed":
        print((ctx.out / "preflight.log").read_text())
        return 1
    device = not args.standin and preflight.device_arch() is not None
    clocks = Clocks(ctx.out / "clocks.csv") if device else None
    background = {}
    env = {**os.environ, "KERNELS_COMPILE_WORKERS": str(ctx.cores)}
    for step in STEPS:
        commands = step.standin if args.standin else step.commands
        why = "no device-free part" if args.standin and commands is None else None if args.standin else \
            missing(step, device)
        left = args.total - (time.monotonic() - start)
        if why is None and not step.background and step.limit > left:
            why = f"{step.limit:.0f} s limit > {left:.0f} s left"
        if why:
            manifest["steps"][step.name] = {"status": "skipped", "reason": why}
        elif step.background and not args.standin:
            log = ctx.out / f"{step.name}.log"
            background[step.name] = (subprocess.Popen(commands(ctx)[0], cwd=ROOT, env=env, stdout=open(log, "w"),
                                                      stderr=subprocess.STDOUT), time.monotonic(), step, log)
            manifest["steps"][step.name] = {"status": "running", "log": log.name}
        else:
            if step.name == "bench":  # host compiles would crowd the host side of the timings
                finish_background(background, manifest)
            manifest["steps"][step.name] = run_commands(step.name, commands(ctx), step.limit,
                                                        ctx.out / f"{step.name}.log", env)
        print(f"{step.name}: {manifest['steps'][step.name]['status']} "
              f"{manifest['steps'][step.name].get('reason', '')}", flush=True)
        write()
    finish_background(background, manifest)
    manifest["clocks"] = clocks.stop() if clocks else {"sampled": False, "reason": "no device"}
    manifest["versions"] = (ctx.out / "versions.log").read_text() if (ctx.out / "versions.log").exists() else ""
    manifest["seconds"] = round(time.monotonic() - start, 1)
    manifest["summary"] = {s: sum(v["status"] == s for v in manifest["steps"].values())
                           for s in ("passed", "failed", "timed out", "skipped")}
    write()
    done = manifest["summary"]
    print(f"{ctx.out}: manifest.json, a log per step, in {manifest['seconds']} s")
    print(f"report: {done['passed']} passed, {done['failed'] + done['timed out']} failed, {done['skipped']} skipped")
    return int(any(v["status"] in ("failed", "timed out") for v in manifest["steps"].values()))


def finish_background(background: dict, manifest: dict):
    """Wait for the background steps within their limits (killed past them) and record them."""
    for name, (proc, started, step, log) in list(background.items()):
        try:
            rc = proc.wait(timeout=max(1, step.limit - (time.monotonic() - started)))
            status = "passed" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            proc.kill()
            rc, status = None, "timed out"
        manifest["steps"][name] = {"status": status, "rc": rc, "seconds": round(time.monotonic() - started, 1),
                                   "log": log.name, "background": True}
        del background[name]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.gpurun.report", description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the plan with estimated times, run nothing")
    ap.add_argument("--standin", action="store_true", help="run the steps' device-free parts only")
    ap.add_argument("--out", help="the run's folder (default plots/results/gpu-run-<date>-<gpu>)")
    ap.add_argument("--total", type=float, default=TOTAL, help="seconds for the whole run")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args(argv)
    if args.dry_run:
        print(plan_table(device=preflight.device_arch() is not None))
        return 0
    if args.out is None:
        from plots.bench.machine import slug  # the results files' naming

        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        args.out = str(ROOT / "plots" / "results" / f"gpu-run-{stamp}-{slug(gpu_name().split(',')[0])}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
