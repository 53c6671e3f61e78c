"""A static performance model of every GPU kernel, from its compiled code and its counted accesses: no GPU.

    python -m plots.model.oned [--json] [--device h100-sxm] [--n 100000000] [--k 3 511] [--dtype float32 float64]

1. Resources, for every kernel of the cupy backend (CUDA C of gpu/*.cu, compiled by NVRTC) and of the
   numba_cuda backend (compiled by numba-cuda and ptxas, plots.model.resources), each dtype, at the default
   launch (block 128, per_thread 4): registers, static and dynamic shared memory, and the theoretical
   occupancy on sm_90 and sm_80 (plots.model.devices.occupancy).
2. The hot loop, read from the cubin's SASS (nvdisasm): the innermost loop holding the most FMAs.
   FMA per issued instruction, shared loads (LDS) per FMA, global loads (LDG) per FMA.
3. Global traffic, counted by plots.model.traffic on a small launch of the numba.cuda kernels under the simulator
   (n = 2048, k = 3 and 31): 32-byte sectors per warp request, sectors and unique bytes per output,
   fitted as a + b*k per output. The CUDA C kernels have the same index formulas (gpu/cupy/correlate.cu and
   gpu/numba_cuda/correlate.py), so their traffic is taken from their numba twin: the emulator runs
   raw pointers and cannot record accesses. The ladder steps of gpu/cupy/ladder.cu (regwin, vec, wg_regwin)
   take the fit of cupy tiled for the same op (the same unique bytes); their numba twins
   (gpu/numba_cuda/ladder.py: regwin, wg_regwin) are traced themselves.
4. The optimistic bound, for conv1d and conv1d_weight_grad of every GPU variant at (n, k), on a device of
   plots.model.devices (latency hidden, the hot loop only):

       T_opt = max(T_dram, T_fma, T_issue, T_shared, T_l1, T_chain)
       T_dram   = max(min bytes, unique bytes) / the measured copy bandwidth (devices.copy_gbs, not the datasheet)
       T_fma    = executed FMAs / (FMA lanes x active SMs x clock)
       T_issue  = executed FMAs / 32 / (FMA per instruction) / (4 issues x active SMs x clock)
       T_shared = executed FMAs / 32 x LDS per FMA x (itemsize / 4) / (active SMs x clock)
       T_l1     = sectors / (4 sectors x active SMs x clock)
       T_chain  = the longest chain of dependent FMAs in one thread x FMA latency / clock

   with active SMs = min(SMs, blocks of the launch), and executed FMAs counting the taps a tile
   computes beyond k (the tiled weight gradients and wg_regwin compute whole tap tiles). The ladder steps
   use the instantiation gpu/cupy/ladder.py launches at block 128 (R outputs, TP taps per thread, MAXB).
5. The latency-aware estimate, the prediction (`time_s`, `bound`): the largest of T_dram, T_chain, the per-SM
   bounds above times the last wave's tail (bounds.waves: blocks over resident blocks x SMs), and

       latency_dram  the bytes read / (SMs x resident threads x bytes in flight per thread / DRAM latency)
       latency_l2    the bytes loaded through L1 / (the same / L2 latency)             (Little's law)
       life          for a step whose shape declares its chunks (gpu.launch forward_shape, wg_shape): the
                     busiest block slot's chunks (its waves included) x the longest of, per chunk,
                     round trips x mean load latency + the block's own issue, the SM's issue of all its
                     resident blocks, and their FMAs on the FMA pipe (bounds.chunk_round)

   where a chunk's instructions are its whole life read from the SASS (plots.model.sass.chunk_life): the hot
   loop's trips, the staging loop's trips (its loads in flight per trip set the round trips and the bytes
   in flight), the chunk's straight-line code, the prologue and epilogue spread over the block's chunks.
   Latencies and the copy ceiling are in plots.model.devices with their sources. The band of a prediction
   runs from it to the optimistic bound (`optimistic`). Both still assume caches that catch every reuse
   beyond the unique bytes, no bank conflicts, the boost clock, no launch overhead, and leave out the second
   pass of the split reductions (splits x k additions); the CUDA C kernels' traffic comes from their numba
   twins (the emulator runs raw pointers), the ladder steps' from cupy tiled (their unique bytes are the same).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import math
import platform
import shutil
import subprocess
import sys

import numpy as np

import kernels
from gpu.cupy import nvrtc, tunables
from kernels import registry
from kernels.spec import OPS as SPECS
from plots.model import bounds, child, resources, traffic
from plots.model.devices import ARCH, DEVICES, occupancy
from plots.model.sass import chunk_life, hot_loop, predicated_branches, sass_functions

DTYPES = ("float32", "float64")
BLOCK = 128  # the default launch's block (gpu.launch.Launch)
#: The ops the 1-D model predicts: the forward (every forward op runs its engine) and the weight gradient.
MODEL_OPS = ("conv1d", "conv1d_weight_grad")
GPU_BACKENDS = ("numba_cuda", "cupy")
FMA_LATENCY = {4: 4, 8: 8}  # cycles of a dependent FFMA / DFMA (sm_80, sm_90)
TRACE_N, TRACE_KS = 2048, (3, 31)


def modelled_steps(backend: str) -> list:
    """The steps of `backend` with a hot kernel for an op of MODEL_OPS (what the model predicts)."""
    return [s for s in registry.steps(backend) if any(op in s.hot for op in MODEL_OPS)]


# --- resources and hot loops --------------------------------------------------------------------------------

def cuda_c_kernels(archs=resources.ARCHS) -> list[dict]:
    """Every CUDA C kernel of the cupy steps, per arch: ptxas resources, the hot loop of its SASS and the dynamic
    shared memory of its default launch (the most it asks for at BLOCK)."""
    declared = {k.name: k for k in resources.declared_kernels("cupy")}
    rows = []
    for path in nvrtc.cu_files():
        code = path.read_text()
        names = nvrtc.names_of(path, code)
        for arch in archs:
            log, cubin, lowered = nvrtc.compile_log(code, names, arch, tunables.compile_options(path), path.name,
                                                    cubin=True)
            usage = {u.kernel: u for u in nvrtc.parse_ptxas(log, lowered, path.name)}
            text = resources.sass(cubin)
            funcs, conditional = sass_functions(text), predicated_branches(text)
            for mangled, name in lowered.items():
                u, k = usage[name], declared.get(name)
                rows.append({"backend": "cupy", "file": path.name, "dtype": k.dtype if k else "float32",
                             "arch": arch, "kernel": name, "registers": u.registers, "shared": u.shared,
                             "stack": u.stack, "spill_stores": u.spill_stores, "spill_loads": u.spill_loads,
                             "dynamic_shared": k.shared.get(BLOCK, 0) if k else 0,
                             "hot_loop": hot_loop(funcs.get(mangled, [])),
                             "life": _life(funcs.get(mangled, []), conditional)})
    return rows


def numba_kernels(archs=resources.ARCHS) -> list[dict]:
    """The numba.cuda kernels at the default launch, compiled for real (plots.model.resources, cached)."""
    rows = []
    for r in resources.run(archs):
        if not r["default"]:
            continue
        r = dict(r)
        text = r.pop("sass")
        funcs = sass_functions(text)
        instrs = max(funcs.values(), key=len) if funcs else []
        shared = r.pop("dynamic_shared") or {}
        rows.append({"backend": "numba_cuda", "file": "", **r,
                     "dynamic_shared": shared.get(str(BLOCK), shared.get(BLOCK, 0)), "hot_loop": hot_loop(instrs),
                     "life": _life(instrs, predicated_branches(text))})
    return rows


def _life(instrs, conditional) -> dict | None:
    """`chunk_life` of a kernel with a loop of FMAs; None for one without (a second pass, a fill)."""
    try:
        return chunk_life(instrs, conditional)
    except ValueError:
        return None


# --- counted traffic (simulator, child process) -------------------------------------------------------------

def _trace_child() -> dict:
    """{"numba_cuda:variant:op:dtype:k": counts} of the traced default launches (simulator on)."""
    out = {}
    rng = np.random.default_rng(0)
    backend = "numba_cuda"
    for step in modelled_steps(backend):
        variant = step.variant
        for op in (op for op in MODEL_OPS if op in step.hot):
            for dtype in DTYPES:
                for k in TRACE_KS:
                    args, kwargs = SPECS[op].make_args(rng, np.dtype(dtype), n=TRACE_N, k=k)
                    fn = kernels.get(op, backend, variant)
                    with traffic.recording() as log:
                        fn(*args, **kwargs)
                    out[f"{backend}:{variant}:{op}:{dtype}:{k}"] = traffic.count(log)
    return out


def traced(cache=True) -> dict:
    """`_trace_child` in a child process with the simulator on, cached by content (plots.model.child)."""
    key = (TRACE_N, TRACE_KS)
    return child.run_json("plots.model.oned", ["--trace-child"], simulator=True, name="trace", key=key, cache=cache,
                          what="tracing")


def traffic_fit(counts: dict, step, op: str, dtype: str) -> dict:
    """Per-FMA-row traffic as a + b*k: sectors and unique bytes per valid position (m = n-k+1), fitted
    through the traced k values of the numba_cuda step `step.traced_as` (or of the same variant); and the
    sectors per request of loads and stores. The CUDA C kernels have the index formulas of their numba
    twins, and the emulator runs raw pointers, recording nothing."""
    twin = "numba_cuda", step.traced_as or step.variant
    rows = {k: counts[f"{twin[0]}:{twin[1]}:{op}:{dtype}:{k}"] for k in TRACE_KS}
    (k0, c0), (k1, c1) = sorted(rows.items())
    m0, m1 = TRACE_N - k0 + 1, TRACE_N - k1 + 1
    fit = {}
    for key, get in (("sectors", lambda c: c["sectors"]), ("unique_bytes", lambda c: c["unique_bytes"]),
                     ("load_sectors", lambda c: c["load"]["sectors"])):
        y0, y1 = get(c0) / m0, get(c1) / m1
        b = (y1 - y0) / (k1 - k0)
        fit[key] = (y0 - b * k0, b)
    fit["load_sectors_per_request"] = {k: c["load"]["sectors_per_request"] for k, c in rows.items()}
    fit["store_sectors_per_request"] = {k: c["store"]["sectors_per_request"] for k, c in rows.items()}
    fit["traced_from"] = f"{twin[0]}:{twin[1]}"
    return fit


# --- the model ----------------------------------------------------------------------------------------------

def predict(kernel_row: dict, fit: dict, device, backend: str, step, op: str, n: int, k: int, dtype: str) -> dict:
    """The time of `op` of `step` at (n, k) on `device`: the latency-aware estimate (`time_s`, `bound`) and the
    optimistic bound (`optimistic`), the band the prediction lies in (module docstring)."""
    itemsize = 4 if dtype == "float32" else 8
    m = n - k + 1
    shape = step.shape(op, n, k, dtype)
    loop, life = kernel_row["hot_loop"], kernel_row.get("life")
    occ = occupancy(device, kernel_row["registers"], BLOCK, kernel_row["shared"] + kernel_row["dynamic_shared"])
    blocks = shape["blocks"]
    sms = min(device.sms, blocks * 1.0)
    hz = device.clock_ghz * 1e9
    lanes = device.fp32_fma_per_clk_sm if itemsize == 4 else device.fp64_fma_per_clk_sm
    fmas = shape["fmas"]
    written = itemsize * (m if op == "conv1d" else k)
    min_bytes = itemsize * (n + k + m)
    sectors = max(0.0, fit["sectors"][0] + fit["sectors"][1] * k) * m
    loaded = max(0.0, fit["load_sectors"][0] + fit["load_sectors"][1] * k) * m * traffic.SECTOR if (
        "load_sectors" in fit) else sectors * traffic.SECTOR
    unique = max(0.0, fit["unique_bytes"][0] + fit["unique_bytes"][1] * k) * m
    moved = max(min_bytes, unique)
    t = {
        "dram": moved / (device.copy_gbs * 1e9),
        "fma": fmas / (lanes * sms * hz),
        "issue": (fmas / 32 / loop["fma_per_instruction"] / (device.issue_per_clk_sm * sms * hz)
                  if loop["fma_per_instruction"] else 0.0),
        "shared": bounds.pipe_time(fmas / 32 * loop["lds_per_fma"] * (itemsize / 4) / sms, device),
        "l1": bounds.pipe_time(sectors / (device.l1_bytes_per_clk_sm / 32) / sms, device),
        "chain": shape["chain"] * FMA_LATENCY[itemsize] / hz,
    }
    optimistic = max(t, key=t.get)
    latency, parts = _latency_times(life, shape, occ["blocks_per_sm"], device, itemsize, lanes, moved - written,
                                    max(loaded, moved - written), min_bytes)
    honest = {**t, **latency}
    _, tail = bounds.waves(blocks, occ["blocks_per_sm"] * device.sms)
    for key in ("fma", "issue", "shared", "l1"):  # per-SM pipes: the last wave's tail idles the others
        honest[key] *= tail
    bound = max(honest, key=honest.get)
    flops = 2 * k * m

    def rates(time):
        return {"time_s": time, "gbs": min_bytes / time / 1e9, "gflops": flops / time / 1e9,
                "hbm_fraction": min_bytes / time / 1e9 / device.copy_gbs,
                "peak_fraction": flops / time / 1e9 / device.peak_gflops(itemsize)}

    return {"backend": backend, "variant": step.variant, "op": op, "dtype": dtype, "n": n, "k": k,
            "device": device.slug, **rates(honest[bound]), "bound": bound, "times": honest,
            "optimistic": {**rates(t[optimistic]), "bound": optimistic},
            "intensity": flops / min_bytes, "blocks": blocks, "executed_fma_ratio": fmas / (k * m),
            "occupancy": occ["occupancy"], "blocks_per_sm": occ["blocks_per_sm"],
            "waves": blocks / max(1, occ["blocks_per_sm"] * device.sms), "tail": tail, "life": parts}


def _latency_times(life, shape, resident: int, device, itemsize: int, lanes: int, read: float, loaded: float,
                   min_bytes: float) -> tuple[dict, dict]:
    """The latency-aware bounds of a launch (module docstring, 5.): `latency_dram` and `latency_l2` (Little's law
    on the bytes each thread keeps in flight: the `read` bytes DRAM serves, the `loaded` bytes L2 serves) and,
    for a step that declares its chunks, `life` (every chunk of the busiest block slot, counted from the SASS,
    `plots.model.sass.chunk_life`, its round trips at the mean latency of a load: DRAM's for the share of the
    staged values read for the first time, read / (chunks x staged), L2's for the rest (the other tap tiles and
    the halos read them again); all L2's when the data fits in L2); none without a SASS life.
    Second, what the life bound counted per chunk."""
    if not life or not resident:
        return {}, {}
    blocks, warps = shape["blocks"], BLOCK // 32
    sms = min(device.sms, blocks)
    per_sm = min(resident, -(-blocks // device.sms))  # blocks on one SM at once
    inflight = life["bytes_in_flight"]
    dram_s, l2_s = device.dram_latency_ns * 1e-9, device.l2_latency_cycles / (device.clock_ghz * 1e9)
    out = {"latency_dram": bounds.little_time(read, sms, per_sm * BLOCK, inflight, dram_s),
           "latency_l2": bounds.little_time(loaded, sms, per_sm * BLOCK, inflight, l2_s)}
    if "chunks" not in shape:
        return out, {}
    chunks, hot, stage = shape["chunks"], life["hot"], life["staging"]
    per_thread = shape["staged"] / BLOCK
    trips = math.ceil(per_thread * itemsize / stage["bytes_in_flight"]) if stage else 0
    instructions = (life["straight"]["instructions"] + life["outer"]["instructions"] * blocks / chunks
                    + trips * (stage["instructions"] if stage else 0)
                    + shape["chunk_fmas"] * hot["instructions"] / max(1, hot["fma"]))
    round_trips = trips + (1 if life["straight"]["ldg"] else 0)
    staged = chunks * shape["staged"] * itemsize  # every chunk's loads; DRAM answers the first touch of each value
    first = min(1.0, read / staged) if min_bytes > device.l2_mb * 1e6 else 0.0
    latency = first * device.dram_latency_cycles + (1 - first) * device.l2_latency_cycles
    cycles = bounds.chunk_round(per_sm, warps, instructions, round_trips, latency,
                                shape["chunk_fmas"] * BLOCK, device, lanes)
    slots = resident * device.sms
    rounds = math.ceil(blocks / slots) * chunks / blocks if blocks > slots else math.ceil(chunks / blocks)
    out["life"] = rounds * max(cycles.values()) / (device.clock_ghz * 1e9)
    return out, {"instructions_per_chunk": instructions, "round_trips_per_chunk": round_trips, "rounds": rounds,
                 "cycles_per_round": cycles}


@functools.cache
def kernel_table() -> tuple:
    """(rows of every kernel at the default launch, sm_80 and sm_90, with occupancy) as a tuple of dicts."""
    rows = cuda_c_kernels() + numba_kernels()
    for r in rows:
        for slug, arch in ARCH.items():
            if arch == r["arch"]:
                occ = occupancy(DEVICES[slug], r["registers"], BLOCK if r.get("blocks") is None or
                                len(r["blocks"]) > 1 else r["blocks"][0], r["shared"] + r["dynamic_shared"])
                r[f"occupancy_sm{arch}"] = occ["occupancy"]
                r[f"limiter_sm{arch}"] = occ["limiter"]
    return tuple(rows)


def model(ns, ks, dtypes=("float32",), devices=("h100-sxm", "h200"), ops=MODEL_OPS, cache=True) -> list[dict]:
    """Predictions for every modelled step x op x dtype x n x k on each device."""
    rows, counts = kernel_table(), traced(cache)
    index = {(r["backend"], r["kernel"], r["dtype"], r["arch"]): r for r in rows}
    out = []
    for slug in devices:
        device = DEVICES[slug]
        for backend in GPU_BACKENDS:
            for step in modelled_steps(backend):
                for op in (op for op in ops if op in step.hot):
                    for dtype in dtypes:
                        fit = traffic_fit(counts, step, op, dtype)
                        for n in ns:
                            for k in (k for k in ks if k <= n):
                                name = step.hot[op](dtype, k)
                                kr = index.get((backend, name, dtype, ARCH[slug]))
                                if kr is None:
                                    raise KeyError(f"{backend} kernel {name} ({dtype}, sm_{ARCH[slug]}) not compiled")
                                out.append(predict(kr, fit, device, backend, step, op, n, k, dtype))
    return out


def resource_table(rows) -> str:
    header = ("backend", "kernel", "dtype", "regs", "smem", "dyn smem", "occ sm_90", "occ sm_80",
              "FMA/inst", "LDS/FMA", "LDG/FMA")
    by = {}
    for r in rows:
        by.setdefault((r["backend"], r["kernel"], r["dtype"]), {})[r["arch"]] = r
    lines = [header]
    for (backend, kernel, dtype), archs in by.items():
        r90, r80 = archs.get(90, {}), archs.get(80, {})
        loop = r90.get("hot_loop", {})
        lines.append((backend, kernel, dtype, str(r90.get("registers", "-")), str(r90.get("shared", "-")),
                      str(r90.get("dynamic_shared", "-")), f"{r90.get('occupancy_sm90', 0):.2f}",
                      f"{r80.get('occupancy_sm80', 0):.2f}", f"{loop.get('fma_per_instruction', 0):.2f}",
                      f"{loop.get('lds_per_fma', 0):.2f}", f"{loop.get('ldg_per_fma', 0):.2f}"))
    return _format(lines, left=3)


def prediction_table(preds) -> str:
    header = ("device", "variant", "op", "dtype", "n", "k", "bound", "time", "GB/s", "GFLOP/s", "HBM %", "FP %")
    lines = [header] + [(p["device"], f"{p['backend']}:{p['variant']}", p["op"], p["dtype"], f"{p['n']:.0e}",
                         str(p["k"]), p["bound"], f"{p['time_s'] * 1e3:.3g} ms", f"{p['gbs']:.0f}",
                         f"{p['gflops']:.0f}", f"{100 * p['hbm_fraction']:.1f}", f"{100 * p['peak_fraction']:.1f}")
                        for p in preds]
    return _format(lines, left=4)


def _format(lines, left) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def versions() -> dict:
    """Python, the GPU packages, the device, its driver and the CUDA runtime, as far as they are found."""
    out = {"python": platform.python_version()}
    for package in ("numpy", "numba", "numba-cuda", "cupy-cuda13x", "cuda-bindings", "torch", "nvidia-nvvm"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    out.update(resources.versions_of_tools())  # NVVM, nvJitLink, NVRTC, ptxas, the driver
    if smi := shutil.which("nvidia-smi"):
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True)
        out["device, driver, memory"] = q.stdout.strip() or q.stderr.strip()
    try:
        import cupy  # optional: only on a GPU

        out["CUDA runtime (cupy)"] = cupy.cuda.runtime.runtimeGetVersion()
        out["CUDA driver API (cupy)"] = cupy.cuda.runtime.driverGetVersion()
    except Exception as e:  # no cupy, or no driver
        out["CUDA (cupy)"] = f"unavailable ({type(e).__name__})"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.model.oned", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print everything as JSON")
    ap.add_argument("--device", nargs="+", default=["h100-sxm", "h200"], choices=sorted(DEVICES))
    ap.add_argument("--n", type=float, nargs="+", default=[1e8])
    ap.add_argument("--k", type=int, nargs="+", default=[3, 511])
    ap.add_argument("--dtype", nargs="+", default=["float32"], choices=DTYPES)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--versions", action="store_true", help="print the GPU stack's versions and exit")
    ap.add_argument("--trace-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.versions:
        for name, value in versions().items():
            print(f"{name}: {value}")
        return 0
    if args.trace_child:
        json.dump(_trace_child(), sys.stdout)
        return 0
    for problem in (resources.toolchain_problem(), nvrtc.nvrtc_problem()):
        if problem:
            print(f"plots.model.oned: {problem}", file=sys.stderr)
            return 2
    rows = kernel_table()
    preds = model([int(n) for n in args.n], args.k, tuple(args.dtype), devices=args.device, cache=not args.no_cache)
    if args.json:
        json.dump({"kernels": list(rows), "predictions": preds, "devices": {s: DEVICES[s].as_dict()
                                                                              for s in args.device}},
                  sys.stdout, indent=1, default=str)
        print()
        return 0
    print(resource_table(rows))
    print()
    print(prediction_table(preds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
