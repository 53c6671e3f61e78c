"""Command line: `python -m kernels COMMAND`; `python -m kernels COMMAND --help` for each.

    list      backends with their status (available / real GPU / simulated / emulated / unavailable),
              their variants, and the ops
    check     every backend and variant against the float64 reference (an op x variant x backend table);
              `check FILE` runs the kernels a file declares over the whole edge-size matrix, each call in a
              watched child process (kernels.playground)
    new       write a starter kernel file (numba, numba-cuda or cuda-c) that passes `check` as written
    explain   an op as a matrix (Toeplitz / Hankel), with a numerical check of its gradient
    count     the layer calculator: output shape, parameters and operations of a layer
    bench     benchmarks and plots (runs `python -m plots bench ...`)

Exit status: 0 when everything passed, 1 when a check failed, 2 for bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

import kernels
from kernels import cases, compare, count_cli, explain, playground, registry, starters
from kernels.spec import OPS

#: (n, k) for the table of `check`, by backend status: the CUDA simulator is ~1000x slower than a GPU.
CHECK_SIZES = {"available": (1000, 31), "real GPU": (1 << 20, 31), "simulated": (300, 7),
               "emulated": (2000, 31)}
CIRCULAR_MAX_N = {"simulated": 64}


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


class UsageError(Exception):
    """Bad command-line input: printed as `python -m kernels CMD: error: ...`, exit status 2."""


def cmd_list(args) -> int:
    print("backends:")
    for name, st in kernels.backends().items():
        print(f"  {name:<11} {st.state:<11} {st.reason}")
        for op in OPS if args.verbose else ():
            for v, note in kernels.variants(op, name).items():
                print(f"      {op}[{v}]: {note}")
    print("ops:")
    for name, op in OPS.items():
        print(f"  {name:<28} -> {', '.join(op.outputs):<11} {op.doc}")
    return 0


# --- check -------------------------------------------------------------------------------------------

def _selected_backends(names) -> dict:
    """{backend: Status} of the usable backends, or of `names` (UsageError for unknown or unusable ones)."""
    statuses = kernels.backends()
    for name in names or ():
        if name not in statuses:
            raise UsageError(f"--backend: expected one of {sorted(statuses)}, got {name!r}")
        if not statuses[name].usable:
            raise UsageError(f"--backend {name}: unavailable here ({statuses[name].reason})")
    return {b: s for b, s in statuses.items() if s.usable and (not names or b in names)}


def check_one(op_name, backend, variant, dtype, state, rng) -> compare.Verdict:
    """The verdict on one (op, backend, variant, dtype) at the table's size for the backend's state."""
    n, k = CHECK_SIZES.get(state, (1000, 31))
    if OPS[op_name].family == "circular":
        n = min(n, CIRCULAR_MAX_N.get(state, 1024))
    args, kwargs = OPS[op_name].make_args(rng, dtype, n=n, k=k)
    got = kernels.get(op_name, backend, variant)(*args, **kwargs)
    return compare.check(op_name, got, args, kwargs, method=registry.backend(backend).method(op_name, variant))


def check_table(args) -> int:
    """One row per (op, variant), one column per backend: 'pass r' or 'FAIL r' (r = worst |err| / tolerance)."""
    rng = np.random.default_rng(args.seed)
    statuses = _selected_backends(args.backend)
    ops = args.op or list(OPS)
    known = {v for op in ops for b in statuses for v in kernels.variants(op, b)}
    for v in args.variant or ():
        if v not in known:
            raise UsageError(f"--variant: expected one of {sorted(known)}, got {v!r}")
    width = 24
    print(f"{'op':<28}{'variant':<10}" + "".join(f"{b + ' (' + s.state + ')':<{width}}" for b, s in statuses.items()))
    failures = []
    for op_name in ops:
        variants = sorted({v for b in statuses for v in kernels.variants(op_name, b)})
        for variant in (v for v in variants if not args.variant or v in args.variant):
            row = f"{op_name:<28}{variant:<10}"
            for b, st in statuses.items():
                if variant not in kernels.variants(op_name, b):
                    row += f"{'-':<{width}}"
                    continue
                worst, ok = 0.0, True
                for dtype in cases.DTYPES:
                    try:
                        verdict = check_one(op_name, b, variant, dtype, st.state, rng)
                    except Exception as e:  # a crash is a failure of that cell, not of the run
                        failures.append(f"{op_name} {b}:{variant} {np.dtype(dtype).name}: {type(e).__name__}: {e}")
                        ok = False
                        continue
                    worst = max(worst, verdict.max_ratio)
                    if not verdict.ok:
                        ok = False
                        failures.append(f"{op_name} {b}:{variant} {np.dtype(dtype).name}: {verdict.detail}")
                row += f"{('pass' if ok else 'FAIL') + f' {worst:.2f}':<{width}}"
            print(row)
    print("cells: 'pass r' = both dtypes within tolerance; r = worst |err| / tolerance; '-' = no such variant")
    for line in failures:
        print(f"FAIL {line}")
    return 1 if failures else 0


def check_file(args) -> int:
    """The kernels of one file over the edge-size matrix, each call in a watched child process; every
    failing case printed with what failed and how to rerun it, exit 1 on any failure."""
    env = _asan_env() if args.asan else None
    try:
        report = playground.check_file(args.file, ops=args.op, variants=args.variant, backends=args.backend,
                                       case_labels=args.case, seed=args.seed, limit=args.timeout, env=env)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    failed = report.failed
    if args.json:
        print(json.dumps([r.as_dict() for r in report.results], indent=1))
        return 1 if failed else 0
    for d in report.declared:
        print(f"{d['name']}  ({d['state']})")
        for line in d["resources"]:
            print(f"  resources: {line}")
    for r in report.results:
        if args.verbose or not r.ok:
            print(r.line())
        if not r.ok and r.kind != "not run":
            print(f"      rerun: python -m kernels check {args.file} --case '{r.case}' --seed {report.seed}")
    counts = ", ".join(f"{k} {n}" for k, n in report.counts().items() if n or k != "not run")
    failing = list(dict.fromkeys(r.case for r in failed))  # in plan order: by kernel, then size
    print(f"{len(report.results) - len(failed)} passed, {len(failed)} failed"
          + (f" (caught by {counts})" if failed else "") + f"; seed {report.seed}"
          + (f"; failing cases: {', '.join(failing[:12])}{' ...' if len(failing) > 12 else ''}" if failed else ""))
    return 1 if failed else 0


def _asan_env() -> dict:
    """`check FILE --asan`: the environment of a child whose emulated kernels are built with ASan."""
    cxx = os.environ.get("CXX", "g++")
    try:
        runtime = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True,
                                 check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"--asan: cannot locate libasan.so with CXX={cxx} ({e})") from None
    if not os.path.isabs(runtime):
        raise UsageError(f"--asan: CXX={cxx} has no libasan.so")
    return {**os.environ, "KERNELS_EMU_ASAN": "1", "LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0"}


def cmd_check(args) -> int:
    return check_file(args) if args.file else check_table(args)


# --- new, explain ------------------------------------------------------------------------------------

def cmd_new(args) -> int:
    try:
        path = starters.write(args.op, args.lang, args.output, force=args.force)
    except (KeyError, ValueError, FileExistsError) as e:
        raise UsageError(e.args[0] if e.args else str(e)) from None
    except OSError as e:  # a folder that does not exist, a read-only one
        raise UsageError(f"-o: cannot write {e.filename or args.output}: {e.strerror or e}") from None
    print(f"wrote {path}: a naive {args.op} kernel in {args.lang}. Next:\n"
          f"  python -m kernels check {path}\n  python -m kernels bench {path}")
    return 0


def cmd_explain(args) -> int:
    try:
        print(explain.explain(args.op, n=args.n, k=args.k))
    except ValueError as e:
        raise UsageError(str(e)) from None
    return 0


# --- the parser --------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m kernels", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", help="backends, their status and variants, and the ops")
    p.add_argument("-v", "--verbose", action="store_true", help="also list each backend's variants")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("check", help="implementations against the float64 reference (a table, or a FILE's kernels)",
                       description="Without FILE: every usable backend and variant at one size per op and dtype. "
                                   "With FILE: the kernels it declares over the edge-size matrix (k=1, k=n, n=1, "
                                   "primes, block boundaries, both dtypes and flips, layer settings, NaN-poisoned "
                                   "outputs, inputs and outputs against guard pages, inputs compared with a "
                                   "snapshot, a capped grid for GPU kernels; emulated CUDA C in forward and reverse "
                                   "thread order, strict mode), each call in a child process with a time limit.")
    p.add_argument("file", nargs="?",
                   help="a Python file declaring kernels (kernels.kernel, gpu.cupy.playground.cuda_c)")
    p.add_argument("--backend", action="append", help="only this backend (repeatable)")
    p.add_argument("--op", action="append", choices=list(OPS), metavar="OP", help="only this op (repeatable)")
    p.add_argument("--variant", action="append", help="only this variant (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    p.add_argument("--json", action="store_true", help="FILE: print every case as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="FILE: print passing cases too")
    p.add_argument("--asan", action="store_true", help="FILE: build emulated CUDA C with AddressSanitizer")
    p.add_argument("--timeout", type=_seconds, default=playground.DEFAULT_LIMIT, metavar="SECONDS",
                   help=f"FILE: seconds one call may take, JIT compilation included (default "
                        f"{playground.DEFAULT_LIMIT:g}); a call past it is killed and fails as 'time'")
    p.add_argument("--case", action="append", metavar="LABEL",
                   help="FILE: only the case with this label, as a failing case prints it (repeatable); "
                        "with --seed, the same inputs")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("new", help="write a starter kernel file that passes `check` as written")
    p.add_argument("op", choices=sorted(starters.STARTER_OPS), metavar="OP",
                   help=f"one of {', '.join(sorted(starters.STARTER_OPS))}")
    p.add_argument("--lang", required=True, choices=starters.LANGS, help="numba (CPU), numba-cuda or cuda-c")
    p.add_argument("-o", "--output", help="file to write (default: my_<op>_<lang>.py in this folder)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(run=cmd_new)

    p = sub.add_parser("explain", help="an op as a matrix, with a numerical check of its gradient")
    p.add_argument("op", choices=sorted(explain.EXPLAINED_OPS), metavar="OP",
                   help=f"one of {', '.join(sorted(explain.EXPLAINED_OPS))}")
    p.add_argument("--n", type=int, default=6, help="signal length (the layer: L)")
    p.add_argument("--k", type=int, default=3, help="filter length (the layer: K)")
    p.set_defaults(run=cmd_explain)

    count_cli.register(sub)
    sub.add_parser("bench", add_help=False, help="benchmarks and plots: runs `python -m plots bench ...` "
                                                 "(`bench FILE` times a file's kernels)")
    return top


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return bench(argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"python -m kernels {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"python -m kernels {args.command}: interrupted", file=sys.stderr)
        return 130


def bench(argv) -> int:
    """`python -m kernels bench ...` runs `python -m plots bench ...`: measuring lives beside the plots."""
    return subprocess.call([sys.executable, "-m", "plots", "bench", *argv])
