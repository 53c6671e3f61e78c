"""A static performance model of every GPU kernel, from its compiled code and its counted accesses: no GPU.

    python -m plots.model.oned [--json] [--device h100-sxm] [--n 100000000] [--k 3 511] [--dtype float32 float64]

1. Resources, for every kernel of the cupy backend (CUDA C of gpu/*.cu, compiled by NVRTC) and of the
   numba_cuda backend (compiled by numba-cuda and ptxas, plots.model.compile), each dtype, at the default
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
4. The model, for conv1d and conv1d_weight_grad of every GPU variant at (n, k), on a device of
   plots.model.devices:

       T >= max(T_dram, T_fma, T_issue, T_shared, T_l1, T_chain)
       T_dram   = max(min bytes, unique bytes) / HBM bandwidth
       T_fma    = executed FMAs / (FMA lanes x active SMs x clock)
       T_issue  = executed FMAs / 32 / (FMA per instruction) / (4 issues x active SMs x clock)
       T_shared = executed FMAs / 32 x LDS per FMA x (itemsize / 4) / (active SMs x clock)
       T_l1     = sectors / (4 sectors x active SMs x clock)
       T_chain  = the longest chain of dependent FMAs in one thread x FMA latency / clock

   with active SMs = min(SMs, blocks of the launch), and executed FMAs counting the taps a tile
   computes beyond k (the tiled weight gradients and wg_regwin compute whole tap tiles). The ladder steps
   use the instantiation gpu/cupy/ladder.py launches at block 128 (R outputs, TP taps per thread, MAXB),
   named kernel[R,MAXB] / kernel[TP,MAXB] in the resource rows. The predicted GB/s
   (min bytes / T) and GFLOP/s (2 k m / T) are upper bounds: the model assumes perfect latency hiding,
   caches that catch every reuse beyond the unique bytes, no bank conflicts, no launch overhead, and
   ignores the second pass of the split reductions (splits x k additions). Not captured either: the
   ladder steps' own traffic (taken from cupy tiled: their L1 sectors differ, their unique bytes do
   not), and their dynamic shared memory in the occupancy column (it depends on k).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys

from gpu.cupy import ladder, tunables
from plots.model import child
from plots.model import compile as compile_check
from plots.model.devices import ARCH, DEVICES, occupancy

DTYPES = ("float32", "float64")
CTYPE = {"float32": "float", "float64": "double"}
BLOCK, PER_THREAD = 128, 4  # the default launch (gpu.launch.Launch, gpu.numba_cuda.common.Launch)
OPS = ("conv1d", "conv1d_weight_grad")
FMA_LATENCY = {4: 4, 8: 8}  # cycles of a dependent FFMA / DFMA (sm_80, sm_90)
TRACE_N, TRACE_KS = 2048, (3, 31)

#: The kernels of each GPU variant's conv1d and weight gradient (the hot kernel of each op).
VARIANTS = {
    ("numba_cuda", "naive"): {"conv1d": "correlate.naive_kernel",
                              "conv1d_weight_grad": "reduce.weight_grad_naive_kernel"},
    ("numba_cuda", "tiled"): {"conv1d": f"correlate.tiled_kernel[B={BLOCK},R={PER_THREAD}]",
                              "conv1d_weight_grad": f"reduce.weight_grad_tiled_kernel[B={BLOCK},R={PER_THREAD},"
                                                    "atomic=0]"},
    ("numba_cuda", "atomic"): {"conv1d_weight_grad": f"reduce.weight_grad_tiled_kernel[B={BLOCK},"
                                                     f"R={PER_THREAD},atomic=1]"},
    ("cupy", "naive"): {"conv1d": "correlate_naive", "conv1d_weight_grad": "weight_grad_naive"},
    ("cupy", "tiled"): {"conv1d": "correlate_tiled", "conv1d_weight_grad": "weight_grad_tiled"},
    ("cupy", "atomic"): {"conv1d_weight_grad": "weight_grad_tiled"},
    # gpu/cupy/ladder.cu: the instantiation the launch takes is chosen per dtype and k (ladder_kernel)
    ("cupy", "regwin"): {"conv1d": "correlate_regwin"},
    ("cupy", "vec"): {"conv1d": "correlate_vec"},
    ("cupy", "wg_regwin"): {"conv1d_weight_grad": "weight_grad_regwin"},
    # gpu/numba_cuda/ladder.py: the same steps in numba (instantiation per dtype and k: ladder_kernel)
    ("numba_cuda", "regwin"): {"conv1d": "ladder.regwin_kernel"},
    ("numba_cuda", "wg_regwin"): {"conv1d_weight_grad": "ladder.wg_regwin_kernel"},
}
#: Variants without a numba twin to trace, and the variant whose traffic fit they take (same unique bytes).
TRAFFIC_OF = {"regwin": "tiled", "vec": "tiled", "wg_regwin": "tiled"}
LADDER = {("cupy", "regwin"), ("cupy", "vec"), ("cupy", "wg_regwin"),  # gpu/cupy/ladder.cu, gpu/cupy/ladder.py
          ("numba_cuda", "regwin"), ("numba_cuda", "wg_regwin")}  # gpu/numba_cuda/ladder.py


# --- SASS ---------------------------------------------------------------------------------------------------

_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_TARGET = re.compile(r"`\((\.L_x_\d+)\)")
_FUNC = re.compile(r"^\.text\.(\S+):")


def sass_functions(text: str) -> dict[str, list[tuple]]:
    """{function name: [(offset, opcode, operands, label or None)]} of nvdisasm / cuobjdump -sass output."""
    funcs, current, pending = {}, None, []
    for line in text.splitlines():
        line = line.strip()
        if m := _FUNC.match(line):
            current = funcs.setdefault(m[1], [])
            continue
        if m := _LABEL.match(line):
            pending.append(m[1])
            continue
        if current is not None and (m := _INSTR.search(line)):
            current.append((int(m[1], 16), m[3], m[4], tuple(pending)))
            pending = []
    return funcs


def _kinds(opcode: str) -> set:
    op = opcode.split(".")[0]
    out = set()
    if op in ("FFMA", "DFMA"):
        out.add("fma")
    if op in ("FFMA", "DFMA", "FADD", "DADD", "FMUL", "DMUL"):
        out.add("fp")
    if op == "LDS":
        out.add("lds")
    if op in ("LDG", "LD"):
        out.add("ldg")
    if op in ("STG", "ST", "RED", "ATOMG", "ATOM"):
        out.add("stg")
    return out


def hot_loop(instrs: list[tuple]) -> dict:
    """The innermost loop (a backward branch's span) holding the most FMAs (else FP ops), and its mix.

    Returns instructions, fma, lds, ldg, stg counts of one trip, fma_per_instruction,
    lds_per_fma and ldg_per_fma; zeros (and loop None) when the function has no loop."""
    where = {}
    for i, (_, _, _, labels) in enumerate(instrs):
        for label in labels:
            where[label] = i
    loops = []
    for i, (_, opcode, operands, _) in enumerate(instrs):
        if opcode.startswith(("BRA", "JMP")) and (m := _TARGET.search(operands)) and where.get(m[1], i + 1) <= i:
            loops.append((where[m[1]], i))

    def mix(lo, hi):
        counts = {"instructions": 0, "fma": 0, "fp": 0, "lds": 0, "ldg": 0, "stg": 0}
        for _, opcode, _, _ in instrs[lo:hi + 1]:
            if opcode.startswith("NOP"):
                continue
            counts["instructions"] += 1
            for kind in _kinds(opcode):
                counts[kind] += 1
        return counts

    mixes = {span: mix(*span) for span in loops}
    key = "fma" if any(m["fma"] for m in mixes.values()) else "fp"
    candidates = [s for s in loops if mixes[s][key] and not any(
        t != s and s[0] <= t[0] and t[1] <= s[1] and mixes[t][key] for t in loops)]
    if not candidates:
        return {"loop": None, "instructions": 0, "fma": 0, "fp": 0, "lds": 0, "ldg": 0, "stg": 0,
                "fma_per_instruction": 0.0, "lds_per_fma": 0.0, "ldg_per_fma": 0.0}
    span = max(candidates, key=lambda s: (mixes[s][key], -(s[1] - s[0])))
    m = mixes[span]
    per = max(m["fma"], 1)
    return {"loop": [instrs[span[0]][0], instrs[span[1]][0]], **m,
            "fma_per_instruction": m["fma"] / m["instructions"], "lds_per_fma": m["lds"] / per,
            "ldg_per_fma": m["ldg"] / per}


# --- CUDA C: NVRTC to cubin ---------------------------------------------------------------------------------

def nvrtc_cubin(code: str, names, arch: int, options=(), filename="kernel.cu") -> tuple[str, bytes, dict]:
    """(ptxas log, cubin, {mangled name: name expression}) of CUDA C compiled by NVRTC for sm_`arch`."""
    from gpu.cupy import nvrtc as nvrtc_check

    return nvrtc_check.compile_log(code, names, arch, options, filename, cubin=True)


def cuda_c_kernels(archs=compile_check.ARCHS) -> list[dict]:
    """Every name expression of every .cu under gpu/ (but the deliberately broken fixtures), per arch:
    ptxas resources and the hot loop of its SASS."""
    from gpu.cupy import nvrtc as nvrtc_check
    from gpu.cupy.module import declared_names

    rows = []
    for path in nvrtc_check.cu_files():
        if "broken" in path.name:
            continue
        code = path.read_text()
        names = declared_names(code)
        for arch in archs:
            flags = [f"-I{path.parent}", *tunables.options(tunables.defines_for(path))]
            log, cubin, lowered = nvrtc_cubin(code, names, arch, flags, path.name)
            usage = {u.kernel: u for u in nvrtc_check.parse_ptxas(log, lowered, path.name)}
            funcs = sass_functions(compile_check.sass(cubin))
            for mangled, name in lowered.items():
                u = usage[name]
                base, _, rest = name.partition("<")
                dtype = "float32" if rest.startswith("float") else "float64"
                more = [a.strip() for a in rest.rstrip(">").split(",")[1:]]  # template arguments past the type
                itemsize = 4 if dtype == "float32" else 8
                rows.append({"backend": "cupy", "file": path.name, "dtype": dtype, "arch": arch,
                             "kernel": f"{base}[{','.join(more)}]" if more else base,
                             "registers": u.registers, "shared": u.shared, "stack": u.stack,
                             "spill_stores": u.spill_stores, "spill_loads": u.spill_loads,
                             "dynamic_shared": compile_check.dynamic_shared(base, BLOCK, itemsize),
                             "hot_loop": hot_loop(funcs.get(mangled, []))})
    return rows


def numba_kernels(archs=compile_check.ARCHS) -> list[dict]:
    """The numba.cuda kernels at the default launch, compiled for real (plots.model.compile, cached)."""
    rows = []
    for r in compile_check.run(archs):
        if not r["default"]:
            continue
        r = dict(r)
        funcs = sass_functions(r.pop("sass"))
        instrs = max(funcs.values(), key=len) if funcs else []
        rows.append({"backend": "numba_cuda", "file": "", **r, "dynamic_shared": 0, "hot_loop": hot_loop(instrs)})
    return rows


# --- counted traffic (simulator, child process) -------------------------------------------------------------

def _trace_child() -> dict:
    """{"numba_cuda:variant:op:dtype:k": counts} of the traced default launches (simulator on)."""
    import numpy as np

    import kernels
    from kernels.spec import OPS as SPECS
    from plots.model import traffic as trace

    out = {}
    rng = np.random.default_rng(0)
    for (backend, variant), ops in VARIANTS.items():
        if backend != "numba_cuda":
            continue
        for op in ops:
            for dtype in DTYPES:
                for k in TRACE_KS:
                    args, kwargs = SPECS[op].make_args(rng, np.dtype(dtype), n=TRACE_N, k=k)
                    fn = kernels.get(op, backend, variant)
                    with trace.recording() as log:
                        fn(*args, **kwargs)
                    out[f"{backend}:{variant}:{op}:{dtype}:{k}"] = trace.count(log)
    return out


def traced(cache=True) -> dict:
    """`_trace_child` in a child process with the simulator on, cached by content (plots.model.child)."""
    key = (TRACE_N, TRACE_KS, sorted(v for v in VARIANTS if v[0] == "numba_cuda"))
    return child.run_json("plots.model.oned", ["--trace-child"], simulator=True, name="trace", key=key, cache=cache,
                          what="tracing")


def outputs(op: str, n: int, k: int) -> int:
    return n - k + 1 if op == "conv1d" else k


def traffic_fit(counts: dict, backend: str, variant: str, op: str, dtype: str) -> dict:
    """Per-FMA-row traffic as a + b*k: sectors and unique bytes per valid position (m = n-k+1), fitted
    through the traced k values; and the sectors per request of loads and stores."""
    variant = TRAFFIC_OF.get(variant, variant) if backend == "cupy" else variant  # ladder: cupy tiled's fit
    twin = "numba_cuda", variant
    rows = {k: counts[f"{twin[0]}:{twin[1]}:{op}:{dtype}:{k}"] for k in TRACE_KS}
    (k0, c0), (k1, c1) = sorted(rows.items())
    m0, m1 = TRACE_N - k0 + 1, TRACE_N - k1 + 1
    fit = {}
    for key, get in (("sectors", lambda c: c["sectors"]), ("unique_bytes", lambda c: c["unique_bytes"])):
        y0, y1 = get(c0) / m0, get(c1) / m1
        b = (y1 - y0) / (k1 - k0)
        fit[key] = (y0 - b * k0, b)
    fit["load_sectors_per_request"] = {k: c["load"]["sectors_per_request"] for k, c in rows.items()}
    fit["store_sectors_per_request"] = {k: c["store"]["sectors_per_request"] for k, c in rows.items()}
    fit["traced_from"] = f"{twin[0]}:{twin[1]}"
    return fit


# --- the model ----------------------------------------------------------------------------------------------

def _numba_forward_per_thread(dtype: str) -> int:
    from gpu.numba_cuda import ladder as numba_cuda_ladder

    return numba_cuda_ladder.forward_per_thread(dtype, BLOCK)


def ladder_kernel(name: str, dtype: str, k: int, backend: str = "cupy") -> str:
    """The resource row of the gpu/cupy/ladder.cu instantiation gpu/cupy/ladder.py launches at BLOCK for (dtype,
    k): correlate_<step>[R,MAXB] (R = forward_per_thread) or weight_grad_regwin[TP,MAXB] (TP of wg_layout);
    numba_cuda (gpu/numba_cuda/ladder.py): ladder.regwin_kernel[B=BLOCK,R=R] or
    ladder.wg_regwin_kernel[B=BLOCK,TP=TP] (the same layout choices)."""
    if backend == "numba_cuda":
        if name == "ladder.regwin_kernel":
            return f"{name}[B={BLOCK},R={_numba_forward_per_thread(dtype)}]"
        return f"{name}[B={BLOCK},TP={ladder.wg_layout(k, BLOCK, 4 if dtype == 'float32' else 8)[0]}]"
    t = CTYPE[dtype]
    if name.startswith("correlate_"):
        step = name.removeprefix("correlate_")
        R = ladder.forward_per_thread(step, dtype, BLOCK)
        return f"{name}[{R},{ladder.FORWARD_BOUNDS[(step, t, R)]}]"
    TP = ladder.wg_layout(k, BLOCK, 4 if dtype == "float32" else 8)[0]
    return f"{name}[{TP},{ladder.WG_BOUNDS[(t, TP)]}]"


def _ladder_shape(variant: str, op: str, n: int, k: int, itemsize: int, backend: str = "cupy") -> dict:
    """launch_shape of the gpu/cupy/ladder.cu steps at BLOCK (gpu/cupy/ladder.py; numba_cuda: their twins in
    gpu/numba_cuda/ladder.py, the same layouts): regwin/vec, R contiguous outputs per thread (tile BLOCK*R,
    every output k FMAs, R independent chains of k per tile); wg_regwin, (tiles x splits) blocks of KT = G*TP
    taps (taps past k computed: tiles*KT*m FMAs), each thread's TP chains JS long per chunk over
    ceil(chunks / splits) chunks."""
    from gpu import launch as plan

    m, launch = n - k + 1, plan.Launch(block=BLOCK)
    dtype = "float32" if itemsize == 4 else "float64"
    if op == "conv1d":
        R = (_numba_forward_per_thread(dtype) if backend == "numba_cuda"
             else ladder.forward_per_thread(variant, dtype, BLOCK))
        tile = BLOCK * R
        tiles = -(-m // tile)
        blocks = launch.blocks(m, tile)
        return {"blocks": blocks, "fmas": tiles * tile * k, "chain": k * -(-tiles // blocks)}
    TP, G, JS = ladder.wg_layout(k, BLOCK, itemsize)
    KT, JC = G * TP, BLOCK // G * JS
    tiles, grid_x, chunks = -(-k // KT), launch.blocks(k, KT), -(-m // JC)
    splits = plan.weight_grad_splits(m, JC, grid_x, launch)
    return {"blocks": grid_x * splits, "fmas": tiles * KT * m,
            "chain": JS * -(-chunks // splits) * -(-tiles // grid_x)}


def launch_shape(backend: str, variant: str, op: str, n: int, k: int, itemsize: int) -> dict:
    """Blocks, executed FMAs and the longest dependent-FMA chain per thread, from the kernels' tiling."""
    if (backend, variant) in LADDER:
        return _ladder_shape(variant, op, n, k, itemsize, backend)
    m = n - k + 1
    tiled = variant != "naive"
    if op == "conv1d":
        tile = BLOCK * (PER_THREAD if tiled else 1)
        return {"blocks": min(-(-m // tile), 1 << 16), "fmas": k * m, "chain": k}
    if not tiled:  # one thread per tap sums m products
        return {"blocks": -(-k // BLOCK), "fmas": k * m, "chain": m}
    from gpu import launch as plan

    if backend == "numba_cuda":  # per_thread cut to what k needs (gpu.numba_cuda.common.per_thread_for)
        from gpu.numba_cuda import reduce as red

        needed = -(-k // red.WI)
        per_thread = min(PER_THREAD, next((p for p in plan.NumbaCudaLaunch.PER_THREAD if p >= needed),
                                          plan.NumbaCudaLaunch.PER_THREAD[-1]))
        ti, tj = red.WI * per_thread, red.TJ
    else:
        ti, tj = tunables.WG_TI, tunables.WG_TJ
    tiles = -(-k // ti)
    splits = plan.weight_grad_splits(m, tj, tiles, plan.Launch(block=BLOCK))
    warps = BLOCK // 32
    chain = -(-m // (splits * warps))  # j values one thread adds per tap
    return {"blocks": tiles * splits, "fmas": tiles * ti * m, "chain": chain}


def predict(kernel_row: dict, fit: dict, device, backend: str, variant: str, op: str, n: int, k: int,
            dtype: str) -> dict:
    """The time bound and the roofline position of one op of one variant at (n, k) on `device`."""
    itemsize = 4 if dtype == "float32" else 8
    m = n - k + 1
    shape = launch_shape(backend, variant, op, n, k, itemsize)
    loop = kernel_row["hot_loop"]
    occ = occupancy(device, kernel_row["registers"], BLOCK, kernel_row["shared"] + kernel_row["dynamic_shared"])
    sms = min(device.sms, shape["blocks"] * 1.0)
    hz = device.clock_ghz * 1e9
    lanes = device.fp32_fma_per_clk_sm if itemsize == 4 else device.fp64_fma_per_clk_sm
    fmas = shape["fmas"]
    min_bytes = itemsize * (n + k + (m if op == "conv1d" else m))
    sectors = max(0.0, fit["sectors"][0] + fit["sectors"][1] * k) * m
    unique = max(0.0, fit["unique_bytes"][0] + fit["unique_bytes"][1] * k) * m
    t = {
        "dram": max(min_bytes, unique) / (device.hbm_gbs * 1e9),
        "fma": fmas / (lanes * sms * hz),
        "issue": (fmas / 32 / loop["fma_per_instruction"] / (device.issue_per_clk_sm * sms * hz)
                  if loop["fma_per_instruction"] else 0.0),
        "shared": fmas / 32 * loop["lds_per_fma"] * (itemsize / 4) / (sms * hz),
        "l1": sectors / (device.l1_bytes_per_clk_sm / 32 * sms * hz),
        "chain": shape["chain"] * FMA_LATENCY[itemsize] / hz,
    }
    bound = max(t, key=t.get)
    time = t[bound]
    flops = 2 * k * m
    return {"backend": backend, "variant": variant, "op": op, "dtype": dtype, "n": n, "k": k,
            "device": device.slug, "time_s": time, "bound": bound, "times": t,
            "gbs": min_bytes / time / 1e9, "gflops": flops / time / 1e9,
            "hbm_fraction": min_bytes / time / 1e9 / device.hbm_gbs,
            "peak_fraction": flops / time / 1e9 / device.peak_gflops(itemsize),
            "intensity": flops / min_bytes, "blocks": shape["blocks"], "executed_fma_ratio": fmas / (k * m),
            "occupancy": occ["occupancy"]}


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


def find_kernel(rows, backend, name, dtype, arch):
    for r in rows:
        if r["backend"] == backend and r["kernel"] == name and r["dtype"] == dtype and r["arch"] == arch:
            return r
    raise KeyError(f"{backend} kernel {name} ({dtype}, sm_{arch}) not compiled")


def model(ns, ks, dtypes=("float32",), devices=("h100-sxm", "h200"), ops=OPS, cache=True) -> list[dict]:
    """Predictions for every GPU variant x op x dtype x n x k on each device."""
    rows, counts = kernel_table(), traced(cache)
    out = []
    for slug in devices:
        device = DEVICES[slug]
        for (backend, variant), kernels_of in VARIANTS.items():
            for op in ops:
                if op not in kernels_of:
                    continue
                for dtype in dtypes:
                    fit = traffic_fit(counts, backend, variant, op, dtype)
                    for n in ns:
                        for k in ks:
                            if k > n:
                                continue
                            name = kernels_of[op]
                            if (backend, variant) in LADDER:  # the instantiation depends on dtype and k
                                name = ladder_kernel(name, dtype, k, backend)
                            kr = find_kernel(rows, backend, name, dtype, ARCH[slug])
                            out.append(predict(kr, fit, device, backend, variant, op, n, k, dtype))
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
    import importlib.metadata
    import platform
    import shutil

    out = {"python": platform.python_version()}
    for package in ("numpy", "numba", "numba-cuda", "cupy-cuda13x", "cuda-bindings", "torch", "nvidia-nvvm"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    if smi := shutil.which("nvidia-smi"):
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True)
        out["device, driver, memory"] = q.stdout.strip() or q.stderr.strip()
    try:
        import cupy

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
    from gpu.cupy import nvrtc as nvrtc_check

    for problem in (compile_check.toolchain_problem(), nvrtc_check.nvrtc_problem()):
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
