"""The target of compute-sanitizer in the GPU run: every CUDA C kernel (every variant of the cupy backend, every
op) at small sizes, each result checked against the float64 reference.

    python -m plots.gpurun.sanitize                   # the calls (no device needed)
    compute-sanitizer --tool memcheck --error-exitcode 1 python -m plots.gpurun.sanitize --run
                                                      # also racecheck and synccheck: `commands`

Sizes: n = 1000, k = 31 (the halo crosses blocks at block 32) and a 2-channel layer; block 32 so that several
blocks run.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

TOOLS = ("memcheck", "racecheck", "synccheck")
SIZE = {"n": 1000, "k": 31}
LAYER_SIZE = {"N": 2, "C_in": 4, "C_out": 6, "L": 300, "K": 5, "padding": 2}


def commands(sanitizer: str, python: str) -> dict[str, list[str]]:
    """tool -> the compute-sanitizer command line that runs this module's calls under it."""
    return {tool: [sanitizer, "--tool", tool, "--error-exitcode", "1", python, "-m", "plots.gpurun.sanitize",
                   "--run"] for tool in TOOLS}


def calls():
    """(op, variant, make_args keywords) of every cupy implementation."""
    import kernels
    from kernels.spec import OPS

    return [(op, variant, LAYER_SIZE if OPS[op].family == "layer" else SIZE)
            for op in kernels.ops() for variant in kernels.variants(op, "cupy")]


def run() -> int:
    import kernels
    from kernels import compare
    from kernels.spec import OPS

    st = kernels.status("cupy")
    if st.state != "real GPU":
        print(f"sanitize: cupy is {st.state} ({st.reason}): nothing to sanitize", file=sys.stderr)
        return 1
    rng, wrong = np.random.default_rng(0), 0
    for op, variant, size in calls():
        args, kwargs = OPS[op].make_args(rng, np.float32, **size)
        report = compare.compare(op, kernels.get(op, "cupy", variant, block=32)(*args, **kwargs), args, kwargs)
        wrong += not all(m.ok for m in report)
        print(f"sanitize: {op} {variant}: {'ok' if all(m.ok for m in report) else 'WRONG'}", flush=True)
    return int(bool(wrong))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.gpurun.sanitize", description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="make the calls (under compute-sanitizer)")
    if ap.parse_args(argv).run:
        return run()
    for call in calls():
        print(*call)
    return 0


if __name__ == "__main__":
    sys.exit(main())
