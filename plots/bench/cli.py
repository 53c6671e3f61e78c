"""`python -m plots bench` (alias `python -m kernels bench`): run a preset, write a results file.

Bad input (an unknown op, a selection that leaves nothing to measure, a negative budget) is reported
with a message and exit code 2 before anything is measured.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

from kernels.spec import OPS
from plots.bench.sweeps import PRESETS

PROG = "python -m plots bench"


def _size(text: str) -> int:
    """'1e6' or '1000000' -> 1000000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(value)


def _seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def register(subparsers):
    p = subparsers.add_parser(
        "bench", help="time every implementation available here against baselines",
        description="Sweep n and k for each op, implementation and dtype of a preset: check each point "
                    "against the reference, time it, and write plots/results/<date>-<device>-<preset>.jsonl.")
    p.add_argument("file", nargs="?", help="a Python file declaring kernels: time them beside the built-in "
                                           "variants and baselines, plots in a folder of this run")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="; ".join(f"{k}: {v.doc}" for k, v in PRESETS.items()))
    p.add_argument("--op", action="append", help="only this op (repeatable)")
    p.add_argument("--device", choices=["cpu", "gpu"], help="only the grids of this device")
    p.add_argument("--dtype", action="append", choices=["float32", "float64"], help="only this dtype's grids")
    p.add_argument("--n", action="append", type=_size, help="replace the grids' n (repeatable, 1e6 ok)")
    p.add_argument("--k", action="append", type=_size, help="replace the grids' k values (repeatable)")
    p.add_argument("--include", action="append",
                   help="only implementations matching this pattern: 'numba_cpu:*', 'scipy.*' (repeatable)")
    p.add_argument("--exclude", action="append",
                   help="also leave out implementations matching this pattern (added to each grid's own)")
    p.add_argument("--budget", type=_seconds, help="seconds of timed calls per point")
    p.add_argument("--max-call", type=_seconds, help="skip points estimated slower than this per call (s)")
    p.add_argument("--no-out", action="store_true", help="call kernels without out= (allocation timed too)")
    p.add_argument("--spin", action="store_true",
                   help="leave OpenMP's wait policy alone (default: OMP_WAIT_POLICY=PASSIVE, see plots.bench.sessions)")
    p.add_argument("--results-dir", help="where the results file goes (default plots/results; with FILE: "
                                         "bench-<file name>/, one folder per run with its plots)")
    p.add_argument("--seed", type=int, default=0, help="input seed")
    p.add_argument("--list", action="store_true", help="print what the sweep would run, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_bench)


def build_preset(args):
    """The preset the arguments select. ValueError names a bad --op."""
    unknown = [op for op in args.op or () if op not in OPS]
    if unknown:
        raise ValueError(f"--op: unknown op {unknown[0]!r}; expected one of {', '.join(OPS)}")
    preset = PRESETS[args.preset]
    grids = [g for g in preset.grids if (not args.device or g.device == args.device)
             and (not args.dtype or g.dtype in args.dtype)]
    grids = [replace(g, exclude=g.exclude + tuple(args.exclude)) if args.exclude else g for g in grids]
    preset = replace(preset, grids=tuple(grids))
    preset = preset.with_grids(ops=tuple(args.op) if args.op else None,
                               ns=tuple(args.n) if args.n else None, ks=tuple(args.k) if args.k else None,
                               include=tuple(args.include) if args.include else None)
    changes = {"budget": args.budget, "max_call": args.max_call}
    return replace(preset, **{k: v for k, v in changes.items() if v is not None})


def error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def cmd_bench(args) -> int:
    from plots.bench import analysis, layer, plan, results, runner  # heavy: numba and every backend

    if args.file:
        return bench_file(args)
    try:
        preset = build_preset(args)
    except ValueError as e:
        return error(str(e))
    blocks, left_out = plan.for_preset(preset)
    why = plan.nothing_to_measure(preset, blocks)
    if why:
        return error(f"nothing to measure: {why}")
    if args.list:
        for name, st in runner.backend_states().items():
            print(f"backend {name}: {st['state']}{'' if st['timed'] else ' (not timed)'} {st['reason']}")
        for _gi, grid, op, candidates in blocks:
            if grid.shapes:
                print(f"{grid.device} {grid.dtype} {op}: {len(grid.shapes)} shapes x {len(candidates)} implementations")
            else:
                print(f"{grid.device} {grid.dtype} {op}: {len(plan.points(grid, op))} points "
                      f"(n {min(grid.ns)}..{max(grid.ns)}, k {min(grid.ks)}..{max(grid.ks)}) x {len(candidates)} "
                      "implementations")
            for c in candidates:
                print(f"    {c.label:<28} {c.method:<7} {c.note}")
        for s in left_out:
            print(f"left out: {s['label']}: {s['reason']}")
        return 0
    directory = Path(args.results_dir) if args.results_dir else results.RESULTS_DIR
    path = runner.run(preset, directory=directory, use_out=not args.no_out, seed=args.seed,
                      progress=not args.no_progress, spin=args.spin)
    run = results.load(path)
    for device in run.devices():
        summary = layer.summary if layer.is_layer_run(run) else analysis.summary
        print("\n".join(summary(run, device)), file=sys.stdout)
    print(f"\nresults: {path}")
    return 0


def bench_file(args) -> int:
    from plots.bench import mine  # heavy: the runner, numba and every backend

    try:
        folder = mine.bench_file(args.file, out=args.results_dir, ns=tuple(args.n or mine.NS),
                                 ks=tuple(args.k or mine.KS), include=args.include, progress=not args.no_progress,
                                 seed=args.seed)
    except (FileNotFoundError, ValueError, KeyError) as e:
        return error(str(e))
    if folder is not None:
        print(f"results and plots: {folder}")
    return 0
