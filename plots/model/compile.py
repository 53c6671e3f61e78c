"""Compile every numba.cuda kernel for real, with no GPU: NVVM to PTX, ptxas to a cubin, nvdisasm to SASS.

    python -m plots.model.compile [--json] [--arch 80 90] [--no-cache]   # exit status 1 on a failed check

The numba_cuda backend's kernels are compiled with numba-cuda's own compiler
(as `numba.cuda.compile_ptx(kernel.py_func, signature, cc=...)` does, with the kernel's own
`launch_bounds` and `max_registers` if it sets them), for each dtype and every launch the backend's
options accept (`block` in 32..1024, less where a kernel refuses larger blocks, `per_thread` in
`Launch.PER_THREAD`), then assembled by `ptxas -v` for sm_80 and sm_90. A configuration fails when
ptxas spills, or when registers x threads per block exceed the 65,536 registers of an SM (the kernel
could not launch).

That needs the simulator off (NUMBA_ENABLE_CUDASIM=0), so `compile_all` runs in a child process
(`python -m plots.model.compile --child`), and its results are cached in $KERNELS_COMPILE_CACHE
(default ~/.cache/kernels-compile), keyed by the kernel sources and the toolchain versions.

Toolchain, all from PyPI (no system CUDA needed): `numba-cuda[cu13]` brings NVVM, `nvidia-cuda-nvcc`
brings ptxas, `nvidia-cuda-nvdisasm` brings nvdisasm. Without a driver, numba-cuda asks for the current
device when a kernel calls a device function (`Dispatcher.compile_device`); `DeviceStandIn` answers
there with the compute capability being compiled for.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from plots.model import child

ARCHS = (80, 90)
BLOCKS = (32, 64, 128, 256, 512, 1024)  # the block sizes gpu.launch.Launch accepts
REGISTER_FILE = 65536  # 32-bit registers per SM on sm_80 and sm_90 (and per block at most)
#: Processes the child compiles with (KERNELS_COMPILE_WORKERS, default: the cores, at most 2).
WORKERS = int(os.environ.get("KERNELS_COMPILE_WORKERS", min(2, os.cpu_count() or 1)))


@dataclass(frozen=True)
class DeviceStandIn:
    """What numba-cuda's `Dispatcher.compile_device` reads from `get_current_device()` when a kernel
    calls a device function: only `compute_capability`. Installed by `stand_in_device` for a compile
    with no driver; the device function is then built for the architecture being compiled for."""

    compute_capability: tuple
    name: str = "compile-only stand-in (no CUDA driver)"


def stand_in_device(cc: tuple):
    """Make numba-cuda's dispatcher see a `DeviceStandIn` of compute capability `cc` as the current device."""
    from numba.cuda import dispatcher

    dispatcher.get_current_device = lambda: DeviceStandIn(tuple(cc))


# --- the toolchain ------------------------------------------------------------------------------------------

def find_tool(name: str) -> str | None:
    """Path of a CUDA binary utility (ptxas, nvdisasm, cuobjdump): the pip wheels first, then PATH/CUDA_HOME."""
    try:
        from cuda.pathfinder import find_nvidia_binary_utility

        path = find_nvidia_binary_utility(name)
        if path:
            return path
    except Exception:  # an old cuda-pathfinder without it, or nothing found
        pass
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / name).exists():
        return str(Path(home) / "bin" / name)
    return shutil.which(name)


def nvvm_problem() -> str | None:
    """Why numba-cuda cannot compile here (no numba-cuda, or NVVM not loadable), or None.

    On a real GPU this is what the numba_cuda backend needs beyond the driver: `pip install
    "numba-cuda[cu13]"` brings libnvvm and nvJitLink."""
    try:
        importlib.metadata.version("numba-cuda")
    except importlib.metadata.PackageNotFoundError:
        return "the numba-cuda package is not installed"
    code = "from numba.cuda.cudadrv import nvvm; nvvm.NVVM().get_version()"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}  # NVVM is not loaded under the simulator
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return f"numba-cuda cannot load NVVM ({last}); pip install 'numba-cuda[cu13]'"
    return None


def compiler_problem() -> str | None:
    """In a process that runs numba.cuda for real (simulator off): why numba-cuda cannot compile a kernel
    (libnvvm not found), or None. The numba_cuda backend's status reports it as "unavailable"."""
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
    except Exception as e:
        reason = " ".join(str(e).split())[:200]
        return f"numba-cuda cannot compile: NVVM not loadable ({reason}); pip install 'numba-cuda[cu13]'"
    return None


@functools.cache
def toolchain_problem() -> str | None:
    """Why the real compile check cannot run here, or None."""
    if not find_tool("ptxas"):
        return "ptxas not found (pip install nvidia-cuda-nvcc)"
    return nvvm_problem()


def ptxas(ptx: str, arch: int, options=()) -> tuple[str, bytes]:
    """(the `ptxas -v` log, the cubin) of PTX text assembled for sm_`arch`."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "k.ptx"), Path(tmp, "k.cubin")
        src.write_text(ptx)
        run = subprocess.run([find_tool("ptxas"), f"-arch=sm_{arch}", "-v", *options, str(src), "-o", str(out)],
                             capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"ptxas failed (sm_{arch}):\n{run.stderr}")
        return run.stderr + run.stdout, out.read_bytes()


def sass(cubin: bytes) -> str:
    """The SASS of a cubin, from nvdisasm (or cuobjdump -sass)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "k.cubin")
        path.write_bytes(cubin)
        if tool := find_tool("nvdisasm"):
            cmd = [tool, "-c", str(path)]
        elif tool := find_tool("cuobjdump"):
            cmd = [tool, "-sass", str(path)]
        else:
            raise RuntimeError("neither nvdisasm nor cuobjdump found (pip install nvidia-cuda-nvdisasm)")
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas(log: str) -> dict:
    """registers, static shared memory, stack, spill stores and loads of the (one) entry in a ptxas log."""
    regs, smem, frame = _USED.search(log), _SMEM.search(log), _FRAME.search(log)
    stack, stores, loads = map(int, frame.groups()) if frame else (0, 0, 0)
    return {"registers": int(regs[1]) if regs else 0, "shared": int(smem[1]) if smem else 0, "stack": stack,
            "spill_stores": stores, "spill_loads": loads}


# --- what to compile ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """One numba.cuda kernel specialisation and the block sizes it is launched with."""

    kernel: str  # module.kernel[compile-time sizes]
    dtype: str
    blocks: tuple  # block sizes at which this compiled kernel may be launched
    signature: str  # for messages: the argument types
    default: bool = False  # compiled at the default launch of its variant (what plots.model.oned models)
    dynamic_shared: dict = dataclasses.field(default_factory=dict)  # {block: most bytes a launch asks for}


def configurations(dtypes=("float32", "float64")):
    """[(Config, dispatcher, argument types)]: every kernel of the numba_cuda backend, each dtype, each
    accepted launch. Imports numba.cuda: call with the simulator off."""
    import numpy as np
    from numba import boolean, int64, types

    from gpu.numba_cuda import common, layer
    from gpu.numba_cuda import correlate as corr
    from gpu.numba_cuda import layer_gemm as gemm
    from gpu.numba_cuda import reduce as red

    default = common.Launch()
    out = []

    def add(name, dispatcher, argtypes, dtype, blocks=BLOCKS, is_default=False, dynamic=None):
        sig = ", ".join(map(str, argtypes))
        out.append((Config(name, dtype, tuple(blocks), sig, is_default, dynamic or {}), dispatcher, tuple(argtypes)))

    for dtype in dtypes:
        T = getattr(types, dtype)
        a1, a1a = types.Array(T, 1, "C"), types.Array(T, 1, "A")
        a2, a2a, a3 = types.Array(T, 2, "C"), types.Array(T, 2, "A"), types.Array(T, 3, "C")
        corr_args = (a1, int64, boolean, a1, boolean, a1, T, T, int64, a1)
        add("common.fill_kernel", common.fill_kernel, (a1, T), dtype, is_default=True)
        for src in (a1, a1a):
            for dst in (a1, a1a):
                add(f"common.copy_kernel[{src.layout}->{dst.layout}]", common.copy_kernel, (src, dst), dtype,
                    is_default=src.layout == dst.layout == "C")
        add("correlate.naive_kernel", corr.naive_kernel, corr_args, dtype, is_default=True)
        add("reduce.weight_grad_naive_kernel", red.weight_grad_naive_kernel, (a1, a1, a1, T, boolean), dtype,
            is_default=True)
        for part in (a2, a2a):
            add(f"reduce.sum_columns_kernel[{part.layout}]", red.sum_columns_kernel, (part, a1, T), dtype,
                is_default=part.layout == "C")
        direct = tuple(b for b in BLOCKS if b <= getattr(layer, "DIRECT_MAX_BLOCK", BLOCKS[-1]))
        add("layer.forward_kernel", layer.forward_kernel, (a3, a3, a1, a3, *[int64] * 4, T), dtype, direct,
            is_default=True)
        add("layer.input_grad_kernel", layer.input_grad_kernel, (a3, a3, a3, *[int64] * 5, T), dtype, direct,
            is_default=True)
        add("layer.param_grad_partial_kernel", layer.param_grad_partial_kernel,
            (a3, a3, a2, *[int64] * 6, T), dtype, direct, is_default=True)
        add("layer.transposed_filter_kernel", layer.transposed_filter_kernel, (a3, a3, int64), dtype,
            is_default=True)
        itemsize = np.dtype(dtype).itemsize
        corr_max = getattr(corr, "TILED_MAX_BLOCK", BLOCKS[-1])
        red_max = getattr(red, "TILED_MAX_BLOCK", BLOCKS[-1])
        for block in BLOCKS:
            for atomic in (False, True):
                k = red.block_sums_kernel(np.dtype(dtype), block, atomic)
                add(f"reduce.block_sums_kernel[B={block},atomic={int(atomic)}]", k, (a1, a2, T), dtype, (block,),
                    is_default=block == default.block)
            for R in common.Launch.PER_THREAD:
                is_default = block == default.block and R == default.per_thread
                tile = block * R
                if block <= corr_max and (3 * tile - 1) * itemsize <= common.SHARED_BYTES:  # else refused
                    k = corr.tiled_kernel(np.dtype(dtype), block, R)
                    add(f"correlate.tiled_kernel[B={block},R={R}]", k, corr_args, dtype, (block,), is_default)
                wg_max = red_max if R <= 4 else red_max // 2
                if block <= wg_max and (2 * red.TJ + (block + red.WI) * R) * itemsize <= common.SHARED_BYTES:
                    for atomic in (False, True):
                        k = red.weight_grad_tiled_kernel(np.dtype(dtype), block, R, atomic)
                        add(f"reduce.weight_grad_tiled_kernel[B={block},R={R},atomic={int(atomic)}]", k,
                            (a1, a1, a2, T, boolean), dtype, (block,), is_default)
                # the layer's x window for stride 1, dilation 1 and K >= K_TILE (sizes only, not registers)
                window = 1 << (tile - 1 + layer.K_TILE - 1).bit_length()
                fits = (window + layer.CO_TILE * layer.K_TILE) * itemsize <= common.SHARED_BYTES
                if fits and block <= getattr(layer, "TILED_MAX_BLOCK", BLOCKS[-1]):
                    k = layer.tiled_kernel(np.dtype(dtype), block, R, window)
                    add(f"layer.tiled_kernel[B={block},R={R},window={window}]", k,
                        (a3, a3, a1, a3, *[int64] * 6, T), dtype, (block,), is_default)
        ladder_configurations(add, dtype, corr_args)
        # the gemm layer: both micro-tile heights RM; the forward's x window for stride 1 and 2 with K <= KT (sizes
        # only, not registers); strides > 1 and the masked dx (stride-1 correlations) at the lower RM only
        for block in (b for b in BLOCKS if b <= gemm.GEMM_MAX_BLOCK):
            for rm in (gemm.RM_MAX[itemsize] // 2, gemm.RM_MAX[itemsize]):
                is_default = block == default.block and rm == gemm.RM_MAX[itemsize]
                for masked, stride in ((False, 1), (False, 2), (True, 1))[:3 if rm < gemm.RM_MAX[itemsize] else 1]:
                    window = 1 << ((gemm.TX * gemm.RN - 1) * stride + gemm.KT - 1).bit_length()
                    # stride 1 with one tap per chunk (an input-gradient residue class of a single tap)
                    one_tap = 1 << (gemm.TX * gemm.RN - 1).bit_length()
                    for w_size in sorted({window, one_tap} if stride == 1 else {window}):
                        k = gemm.conv_kernel(np.dtype(dtype), block, rm, w_size, masked, stride == 1)
                        add(f"layer_gemm.conv_kernel[B={block},RM={rm},window={w_size},masked={int(masked)},"
                            f"stride1={int(stride == 1)}]", k, (a1, a1, a1, a1, *[int64] * 18, T), dtype, (block,),
                            is_default and stride == 1 and w_size == window)
                k = gemm.weight_grad_kernel(np.dtype(dtype), block, rm)
                add(f"layer_gemm.weight_grad_kernel[B={block},RM={rm}]", k, (a1, a1, a1, *[int64] * 13, T), dtype,
                    (block,), is_default)
    return out


#: k values that reach every (taps per thread, tap groups) layout of the ladder's weight gradient.
LADDER_KS = (1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257, 512, 513, 1024, 1025, 10**6)


def ladder_configurations(add, dtype: str, corr_args):
    """The ladder steps of gpu/numba_cuda/ladder.py at every launch their launchers accept: regwin for
    R in PER_THREAD at each block up to its bound (and within the shared memory), wg_regwin for each
    taps-per-thread TP up to its bound, and the second pass; with the most dynamic shared memory a
    launch asks for (regwin: a full filter chunk; wg_regwin: the largest layout over k). The default
    rows are the instantiations launched at block 128 (what plots.model.oned models)."""
    import numpy as np
    from numba import boolean, int64, types

    from gpu.cupy import ladder as layout
    from gpu.numba_cuda import ladder

    T = getattr(types, dtype)
    a1 = types.Array(T, 1, "C")
    itemsize = np.dtype(dtype).itemsize
    default = ladder.Launch().block
    for block in BLOCKS:
        for R in ladder.PER_THREAD:
            shared = layout.forward_shared_bytes(block, R, ladder.TAPS, itemsize, False)
            if block <= ladder.FORWARD_BOUNDS[(dtype, R)] and shared <= ladder.SHARED_LIMIT:  # else refused
                add(f"ladder.regwin_kernel[B={block},R={R}]", ladder.regwin_kernel(np.dtype(dtype), block, R),
                    corr_args, dtype, (block,), block == default and R == ladder.forward_per_thread(dtype, block),
                    {block: shared})
        for TP in ladder.TAPS_PER_THREAD:
            if block > ladder.WG_BOUNDS[(dtype, TP)]:
                continue
            layouts = {layout.wg_layout(k, block, itemsize) for k in LADDER_KS}
            shared = max(layout.wg_shared_bytes(block, G, tp, JS, itemsize) for tp, G, JS in layouts if tp == TP)
            add(f"ladder.wg_regwin_kernel[B={block},TP={TP}]", ladder.wg_regwin_kernel(np.dtype(dtype), block, TP),
                (a1, a1, a1, int64, T, boolean, int64, int64), dtype, (block,), block == default, {block: shared})
        add(f"ladder.sum_partials_kernel[B={block}]", ladder.sum_partials_kernel(np.dtype(dtype), block),
            (a1, int64, a1, T), dtype, (block,), block == default)


# --- compiling (child process, simulator off) ---------------------------------------------------------------

def kernel_ptx(dispatcher, argtypes, archs) -> dict:
    """{arch: PTX} of one kernel specialisation, with the kernel's own launch_bounds and fastmath.

    numba-cuda's pipeline (typing, lowering to LLVM IR) runs once, at the highest architecture; NVVM
    then generates PTX for each (`CUDACodeLibrary.get_asm_strs(cc=...)`), as `numba.cuda.compile_ptx`
    does for one. Falls back to one `compile_ptx` per architecture if that internal API moved."""
    from numba import cuda

    opts = dispatcher.targetoptions
    kw = {"fastmath": bool(opts.get("fastmath")), "launch_bounds": opts.get("launch_bounds")}
    ccs = {arch: (arch // 10, arch % 10) for arch in archs}
    stand_in_device(ccs[max(archs)])
    try:
        from numba.cuda.compiler import _compile_pyfunc_with_fixup
    except ImportError:
        _compile_pyfunc_with_fixup = None
    if _compile_pyfunc_with_fixup is None:
        out = {}
        for arch, cc in ccs.items():
            stand_in_device(cc)
            out[arch] = cuda.compile_ptx(dispatcher.py_func, argtypes, cc=cc, **kw)[0]
        return out
    lib, _ = _compile_pyfunc_with_fixup(dispatcher.py_func, argtypes, device=False, cc=ccs[max(archs)],
                                        abi="numba", **kw)
    return {arch: lib.get_asm_strs(cc=cc)[0] for arch, cc in ccs.items()}


def compile_one(dispatcher, argtypes, archs=ARCHS, want_sass=False) -> dict:
    """{arch: resource usage} of one kernel specialisation (and its SASS if asked)."""
    opts = dispatcher.targetoptions
    extra = [f"-maxrregcount={opts['max_registers']}"] if opts.get("max_registers") else []
    out = {}
    for arch, ptx in kernel_ptx(dispatcher, argtypes, archs).items():
        log, cubin = ptxas(ptx, arch, extra)
        row = parse_ptxas(log)
        row["launch_bounds"] = opts.get("launch_bounds")
        if want_sass:
            row["sass"] = sass(cubin)
        out[arch] = row
    return out


def compile_all(archs=ARCHS, want_sass=False, only_default=False, workers=1) -> list[dict]:
    """Every configuration compiled for every architecture: one dict per (config, arch), in the order of
    `configurations()`, with the SASS of the default-launch ones if `want_sass`; spread over `workers`
    processes (spawned, so each imports numba afresh)."""
    count = len(configurations())
    if workers <= 1:
        return [{k: v for k, v in r.items() if k != "_index"}
                for r in _compile_part(archs, want_sass, only_default, range(count))]
    import concurrent.futures
    import multiprocessing

    parts = [range(i, count, workers) for i in range(workers)]
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(_compile_part, *zip(*[(archs, want_sass, only_default, p) for p in parts])))
    rows = [row for part in done for row in part]
    return sorted(rows, key=lambda r: r.pop("_index"))


def _compile_part(archs, want_sass, only_default, indices) -> list[dict]:
    rows = []
    configs = configurations()
    for i in indices:
        config, dispatcher, argtypes = configs[i]
        if only_default and not config.default:
            continue
        for arch, row in compile_one(dispatcher, argtypes, archs, want_sass and config.default).items():
            rows.append({**dataclasses.asdict(config), "arch": arch, **row, "_index": (i, arch)})
    return rows


def dynamic_shared(kernel: str, block: int, itemsize: int) -> int:
    """Bytes of dynamic shared memory the cupy backend asks for at `block` (gpu/cupy/backend.py)."""
    from gpu.cupy import tunables as cuda_tunables

    return cuda_tunables.dynamic_shared(kernel, block, itemsize)


SHARED_DEFAULT = 48 << 10  # dynamic shared memory a launch may ask for without opting in


def accepted_blocks(template_args: str) -> tuple:
    """The block sizes a CUDA C kernel is launched at: every one of BLOCKS, or those up to its launch bound
    when its name expression ends in one (gpu/cupy/ladder.cu: `kernel<T, R, MAXB>`, launched at most MAXB wide)."""
    args = [a.strip() for a in template_args.rstrip(">").split(",")]
    if len(args) >= 3 and args[-1].isdigit():
        return tuple(b for b in BLOCKS if b <= int(args[-1]))
    return BLOCKS


def cuda_c_rows(archs=ARCHS) -> list[dict]:
    """Every kernel of every .cu under gpu/ (but the deliberately broken fixtures), compiled by NVRTC
    for each architecture, as rows like `compile_all`'s: launched at every block size, with the dynamic
    shared memory the cupy backend asks for at that size."""
    from gpu.cupy import nvrtc as nvrtc_check

    rows = []
    for path in nvrtc_check.cu_files():
        if "broken" in path.name:
            continue
        for u in nvrtc_check.check(path, archs):
            base, _, rest = u.kernel.partition("<")
            itemsize = 4 if rest.startswith("float") else 8
            blocks = accepted_blocks(rest)
            rows.append({"kernel": f"{path.name}:{u.kernel}", "dtype": "float32" if itemsize == 4 else "float64",
                         "blocks": blocks, "arch": u.arch, "registers": u.registers, "shared": u.shared,
                         "stack": u.stack, "spill_stores": u.spill_stores, "spill_loads": u.spill_loads,
                         "dynamic_shared": {b: dynamic_shared(base, b, itemsize) for b in blocks}})
    return rows


def failures(rows: list[dict]) -> list[str]:
    """A line per failed check: a spill, registers x block > REGISTER_FILE, or static + dynamic shared
    memory over the 48 KB a launch gets without opting in, at an accepted block size."""
    bad = []
    for r in rows:
        where = f"{r['kernel']} {r['dtype']} sm_{r['arch']}"
        if r["spill_stores"] or r["spill_loads"]:
            bad.append(f"{where}: spills ({r['spill_stores']} B stored, {r['spill_loads']} B loaded)")
        for block in r["blocks"]:
            if r["registers"] * block > REGISTER_FILE:
                bad.append(f"{where}: {r['registers']} registers x {block} threads = {r['registers'] * block} "
                           f"> {REGISTER_FILE}: cannot launch at block={block}")
            sizes = r.get("dynamic_shared") if isinstance(r.get("dynamic_shared"), dict) else {}
            dynamic = sizes.get(block, sizes.get(str(block), 0))  # str keys: rows read back from JSON
            if r["shared"] + dynamic > SHARED_DEFAULT:
                bad.append(f"{where}: {r['shared']} B static + {dynamic} B dynamic shared memory at block={block} "
                           f"> {SHARED_DEFAULT} B (the launch does not opt in to more)")
    return bad


# --- the parent side: one cached child process --------------------------------------------------------------

def run(archs=ARCHS, want_sass=True, only_default=False, cache=True) -> list[dict]:
    """`compile_all` in a child process with the simulator off, cached by content (plots.model.child);
    RuntimeError with its log. With `want_sass` (the default, so that the model shares the cache) the
    default-launch rows carry their SASS."""
    args = ["--child", "--arch", *archs, *["--sass"] * want_sass, *["--default"] * only_default, "--workers", WORKERS]
    return child.run_json("plots.model.compile", args, simulator=False, name="numba",
                          key=(tuple(archs), want_sass, only_default, find_tool("ptxas")), cache=cache,
                          what="real compile")


def compile_named(wanted, arch: int) -> dict:
    """{"name:dtype": row with SASS} of the numba.cuda kernels `wanted` ((name, dtype) pairs, named as
    configurations() names them) for sm_`arch`; a name of the gemm layer's conv_kernel that configurations()
    does not list is built from its sizes, as the launch code builds it. Child process, simulator off."""
    import numpy as np
    from numba import int64, types

    from gpu.numba_cuda import layer_gemm as gemm

    configs = {(cfg.kernel, cfg.dtype): (d, a) for cfg, d, a in configurations(tuple({t for _, t in wanted}))}
    out = {}
    for name, dtype in wanted:
        m = re.fullmatch(r"layer_gemm.conv_kernel\[B=(\d+),RM=(\d+),window=(\d+),masked=(\d),stride1=(\d)\]", name)
        if (name, dtype) not in configs and m:
            a1 = types.Array(getattr(types, dtype), 1, "C")
            B, RM, W, masked, s1 = map(int, m.groups())
            configs[(name, dtype)] = (gemm.conv_kernel(np.dtype(dtype), B, RM, W, bool(masked), bool(s1)),
                                      (a1, a1, a1, a1, *[int64] * 18, getattr(types, dtype)))
        if (name, dtype) not in configs:
            raise SystemExit(f"{name} ({dtype}) is not among plots.model.compile.configurations()")
        d, a = configs[(name, dtype)]
        out[f"{name}:{dtype}"] = compile_one(d, a, (arch,), want_sass=True)[arch]
    return out


def run_named(key: str, arch: int, cache=True) -> dict:
    """compile_named for one kernel ("name:dtype") in a cached child process."""
    name, dtype = key.rsplit(":", 1)
    return child.run_json("plots.model.compile", ["--kernels", json.dumps([[name, dtype]]), "--arch", arch],
                          simulator=False, name="kernel", key=(key, arch, find_tool("ptxas")), cache=cache,
                          what="numba.cuda compile")[key]


def table(rows: list[dict]) -> str:
    header = ("kernel", "dtype", "arch", "regs", "smem", "stack", "spill", "blocks")
    lines = [header] + [(r["kernel"], r["dtype"], f"sm_{r['arch']}", str(r["registers"]), str(r["shared"]),
                         str(r["stack"]), str(r["spill_stores"] + r["spill_loads"]),
                         ",".join(map(str, r["blocks"]))) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.model.compile", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, nargs="+", default=list(ARCHS))
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # compile here (simulator off)
    ap.add_argument("--sass", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--default", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--kernels", help=argparse.SUPPRESS)  # compile these (JSON [[name, dtype], ...]) here
    args = ap.parse_args(argv)
    if args.kernels:
        json.dump(compile_named([tuple(w) for w in json.loads(args.kernels)], args.arch[0]), sys.stdout)
        return 0
    if args.child:
        json.dump(compile_all(args.arch, args.sass, args.default, workers=args.workers), sys.stdout)
        return 0
    if problem := toolchain_problem():
        print(f"compile_check: {problem}", file=sys.stderr)
        return 2
    rows = run(args.arch, cache=not args.no_cache)
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    bad = failures(rows)
    for line in bad:
        print(line, file=sys.stderr)
    return int(bool(bad))


if __name__ == "__main__":
    sys.exit(main())
