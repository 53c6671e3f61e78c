"""`python -m plots bench` (alias `python -m kernels bench`): run a preset, write a results file.

Bad input (an unknown op, a selection that leaves nothing to measure, a negative budget, a results folder
that cannot be made) is reported with a message and exit code 2 before anything is measured. With FILE
every flag applies to the file's sweep (`plots.bench.mine`), and the exit code is 1 when a declared kernel
was wrong, impossibly fast or failed at any point.
"""

from __future__ import annotations

import argparse
import math
import os
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
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="(default quick; with FILE, the file's own sweep) "
                        + "; ".join(f"{k}: {v.doc}" for k, v in PRESETS.items()))
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
                   help="idle OpenMP threads spin (OMP_WAIT_POLICY=ACTIVE; default PASSIVE, see plots.bench.sessions)")
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
    preset = PRESETS[args.preset or "quick"]
    grids = [g for g in preset.grids if (not args.device or g.device == args.device)
             and (not args.dtype or g.dtype in args.dtype)]
    return apply_flags(replace(preset, grids=tuple(grids)), args, ops=tuple(args.op) if args.op else None)


def apply_flags(preset, args, ops=None):
    """`preset` with --exclude, --n, --k, --include, --budget and --max-call applied (and `ops`, when given)."""
    grids = [replace(g, exclude=g.exclude + tuple(args.exclude)) if args.exclude else g for g in preset.grids]
    preset = replace(preset, grids=tuple(grids))
    preset = preset.with_grids(ops=ops, ns=tuple(args.n) if args.n else None, ks=tuple(args.k) if args.k else None,
                               include=tuple(args.include) if args.include else None)
    changes = {"budget": args.budget, "max_call": args.max_call}
    return replace(preset, **{k: v for k, v in changes.items() if v is not None})


def writable_folder(path: Path) -> str | None:
    """Why the folder `path` cannot be made or written, or None (it is made)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            return f"{path} is not a folder"
    except OSError as e:
        return f"cannot make {path}: {e.strerror or e}"
    if not os.access(path, os.W_OK):
        return f"cannot write into {path}"
    return None


def print_plan(blocks, left_out):
    """--list: what the sweep would run."""
    from plots.bench import plan, runner  # heavy: numba and every backend

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


def error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def before_measuring(preset, args, folder: Path) -> int | None:
    """The exit code to stop with before anything is measured (nothing to measure, --list, a results folder
    that cannot be made), or None to go on."""
    from plots.bench import plan  # heavy: numba and every backend

    blocks, left_out = plan.for_preset(preset)
    why = plan.nothing_to_measure(preset, blocks)
    if why:
        return error(f"nothing to measure: {why}")
    if args.list:
        print_plan(blocks, left_out)
        return 0
    problem = writable_folder(folder)
    return error(f"--results-dir: {problem}") if problem else None


def cmd_bench(args) -> int:
    from plots.bench import analysis, layer, results, runner  # heavy: numba and every backend

    if args.file:
        return bench_file(args)
    try:
        preset = build_preset(args)
    except ValueError as e:
        return error(str(e))
    directory = Path(args.results_dir) if args.results_dir else results.RESULTS_DIR
    stop = before_measuring(preset, args, directory)
    if stop is not None:
        return stop
    path = runner.run(preset, directory=directory, use_out=not args.no_out, seed=args.seed,
                      progress=not args.no_progress, spin=args.spin)
    run = results.load(path)
    for device in run.devices():
        summary = layer.summary if layer.is_layer_run(run) else analysis.summary
        print("\n".join(summary(run, device)), file=sys.stdout)
    print(f"\nresults: {path}")
    return 0


def file_preset(args, declared):
    """(preset, notes) of `bench FILE` for the declared kernels under the flags; ValueError names a flag that
    selects nothing. None for the preset when nothing can be timed here and no flag asked for anything."""
    from plots.bench import mine  # heavy: the runner, numba and every backend

    if args.op:
        have = sorted({d.op for d in declared})
        if not set(args.op) & set(have):
            raise ValueError(f"--op: {args.file} declares {', '.join(have)}, got {', '.join(args.op)}")
        declared = [d for d in declared if d.op in args.op]
    base = PRESETS[args.preset] if args.preset else None
    preset, notes = mine.preset_for(declared, base=base, dtypes=args.dtype or (None if base else ("float32",)),
                                    devices=[args.device] if args.device else None)
    if not preset.grids:
        if base is not None or args.device or args.dtype:
            raise ValueError(f"nothing to measure: no grid of {'preset ' + repr(args.preset) if base else 'the file'}"
                             " times the declared kernels here with these flags")
        return None, notes
    return apply_flags(preset, args), notes


def bench_file(args) -> int:
    """`bench FILE`: the file's kernels timed beside the others, every flag applied to the file's sweep."""
    from plots.bench import mine  # heavy: the runner, numba and every backend

    try:
        declared = mine.load(args.file)
        preset, notes = file_preset(args, declared)
    except (FileNotFoundError, ValueError, KeyError) as e:
        return error(str(e))
    for note in notes:
        print(f"bench: {note}", file=sys.stderr)
    if preset is None:
        mine.print_model()
        return 0
    folder = Path(args.results_dir or f"bench-{Path(args.file).stem}")
    stop = before_measuring(preset, args, folder)
    if stop is not None:
        return stop
    run_dir, failed = mine.bench_file(declared, preset, args.file, out=folder, use_out=not args.no_out,
                                      progress=not args.no_progress, seed=args.seed, spin=args.spin)
    print(f"results and plots: {run_dir}")
    if failed:
        kinds = sorted({r["status"] for r in failed})
        print(f"{PROG}: {len(failed)} point(s) where a kernel of {args.file} was {' or '.join(kinds)} (above)",
              file=sys.stderr)
        return 1
    return 0
