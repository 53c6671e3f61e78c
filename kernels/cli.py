"""Command line: `python -m kernels list | check | ...`.

    list    backends with their status (available / real GPU / simulated / emulated / unavailable),
            their variants, and the ops
    check   every usable backend and variant against the float64 reference on fresh random
            inputs; prints an op x backend matrix of worst error / tolerance, exits 1 on any failure
    count   the layer calculator (`kernels.count_cli`)
    bench   benchmarks: runs `python -m plots bench` (the harness lives beside the plots)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import kernels
from kernels import compare, count_cli
from kernels.spec import OPS

#: (n, k) for `check`, by backend status: the CUDA simulator is ~1000x slower than a GPU.
CHECK_SIZES = {"available": (1000, 31), "real GPU": (1 << 20, 31), "simulated": (300, 7),
               "emulated": (2000, 31)}
CIRCULAR_MAX_N = {"simulated": 64}


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


def check_one(op_name, backend, variant, dtype, state, rng):
    """Worst error/tolerance ratio over the outputs of one (op, backend, variant, dtype)."""
    n, k = CHECK_SIZES.get(state, (1000, 31))
    if OPS[op_name].family == "circular":
        n = min(n, CIRCULAR_MAX_N.get(state, 1024))
    args, kwargs = OPS[op_name].make_args(rng, dtype, n=n, k=k)
    got = kernels.get(op_name, backend, variant)(*args, **kwargs)
    return compare.compare(op_name, got, args, kwargs)


def cmd_check(args) -> int:
    rng = np.random.default_rng(args.seed)
    statuses = {b: s for b, s in kernels.backends().items() if s.usable and (not args.backend or b in args.backend)}
    ops = args.op or list(OPS)
    width = 24
    print(f"{'op':<28}" + "".join(f"{b + ' (' + s.state + ')':<{width}}" for b, s in statuses.items()))
    failures = 0
    for op_name in ops:
        row = f"{op_name:<28}"
        for b, st in statuses.items():
            worst, ok, count = 0.0, True, 0
            for variant in kernels.variants(op_name, b):
                for dtype in (np.float32, np.float64):
                    try:
                        report = check_one(op_name, b, variant, dtype, st.state, rng)
                    except Exception as e:  # a crash is a failure of that cell, not of the run
                        print(f"  {op_name} {b}[{variant}] {dtype.__name__}: {type(e).__name__}: {e}",
                              file=sys.stderr)
                        ok = False
                        continue
                    count += 1
                    worst = max([worst] + [m.max_ratio for m in report])
                    ok &= all(m.ok for m in report)
            cell = "-" if not count and ok else f"{'pass' if ok else 'FAIL'} {worst:.2f}"
            failures += not ok
            row += f"{cell:<{width}}"
        print(row)
    print("cells: 'pass r' = every variant and dtype within tolerance; r = worst |err| / tolerance")
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="backends, their status and the ops")
    p.add_argument("-v", "--verbose", action="store_true", help="also list each backend's variants")
    p.set_defaults(run=cmd_list)
    p = sub.add_parser("check", help="every backend against the reference")
    p.add_argument("--backend", action="append", help="only this backend (repeatable)")
    p.add_argument("--op", action="append", choices=list(OPS), help="only this op (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    p.set_defaults(run=cmd_check)
    count_cli.register(sub)
    sub.add_parser("bench", add_help=False, help="benchmarks: the same as `python -m plots bench ...`")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return bench(argv[1:])
    args = parser.parse_args(argv)
    return args.run(args)


def bench(argv) -> int:
    """`python -m kernels bench ...` runs `python -m plots bench ...`: measuring lives beside the plots."""
    import subprocess

    return subprocess.call([sys.executable, "-m", "plots", "bench", *argv])
