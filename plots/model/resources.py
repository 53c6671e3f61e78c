"""Compile every numba.cuda kernel for real, with no GPU: NVVM to PTX, ptxas to a cubin, nvdisasm to SASS.

    python -m plots.model.resources [--json] [--arch 80 90] [--no-cache]   # exit status 1 on a failed check

The numba_cuda backend's kernels are compiled with numba-cuda's own compiler
(as `numba.cuda.compile_ptx(kernel.py_func, signature, cc=...)` does, with the kernel's own
`launch_bounds` and `max_registers` if it sets them), for each dtype and every launch the backend's
options accept (`block` in 32..1024, less where a kernel refuses larger blocks, `per_thread` in
`Launch.PER_THREAD`), then assembled by `ptxas -v` for sm_80 and sm_90. A configuration fails when
ptxas spills, or when registers x threads per block exceed the 65,536 registers of an SM (the kernel
could not launch).

That needs the simulator off (NUMBA_ENABLE_CUDASIM=0), so `compile_all` runs in a child process
(`python -m plots.model.resources --child`), and its results are cached in $KERNELS_COMPILE_CACHE
(default ~/.cache/kernels-compile), keyed by the kernel sources and the toolchain versions.

Toolchain, all from PyPI (no system CUDA needed): `numba-cuda[cu13]` brings NVVM, `nvidia-cuda-nvcc`
brings ptxas, `nvidia-cuda-nvdisasm` brings nvdisasm. Without a driver, numba-cuda asks for the current
device when a kernel calls a device function (`Dispatcher.compile_device`); `DeviceStandIn` answers
there with the compute capability being compiled for.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import importlib.metadata
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu.cupy import nvrtc, tunables
from gpu.launch import SHARED_LIMIT
from kernels import registry
from plots.model import child

ARCHS = (80, 90)
DTYPES = ("float32", "float64")
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
    """Make the compiler see a device of compute capability `cc`: numba-cuda's dispatcher gets a `DeviceStandIn`
    as the current device; numba-cuda-mlir, which asks the driver for the device's compute capability even when
    `cc` is given, gets `cc` as the one it caches."""
    from gpu.numba_cuda import jit  # heavy: numba.cuda, in the compile child (simulator off)

    if jit.COMPILER == "numba-cuda-mlir":
        from numba_cuda_mlir import tools  # the optional `mlir` extra

        tools._cached_cc = tuple(cc)
        return
    from numba.cuda import dispatcher  # heavy: numba.cuda, in the compile child (simulator off)

    dispatcher.get_current_device = lambda: DeviceStandIn(tuple(cc))


# --- the toolchain ------------------------------------------------------------------------------------------

def find_tool(name: str) -> str | None:
    """Path of a CUDA binary utility (ptxas, nvdisasm, cuobjdump): the pip wheels first, then CUDA_HOME, PATH and
    /usr/local/cuda/bin; $KERNELS_<NAME> (KERNELS_PTXAS=/path/to/ptxas) chooses one, or none where it does not exist."""
    if (chosen := os.environ.get(f"KERNELS_{name.upper()}")) is not None:
        return chosen if Path(chosen).is_file() else None
    try:
        from cuda.pathfinder import find_nvidia_binary_utility  # optional: the `gpu` extra

        path = find_nvidia_binary_utility(name)
        if path:
            return path
    except Exception:  # an old cuda-pathfinder without it, or nothing found
        pass
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / name).exists():
        return str(Path(home) / "bin" / name)
    return shutil.which(name) or shutil.which(name, path="/usr/local/cuda/bin")


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


@functools.cache
def toolchain_problem() -> str | None:
    """Why the real compile check cannot run here, or None."""
    if not find_tool("ptxas"):
        return "ptxas not found (pip install nvidia-cuda-nvcc)"
    return nvvm_problem()


class PtxVersionError(RuntimeError):
    """The PTX is newer than every assembler here accepts: NVVM is newer than ptxas, and no nvJitLink as new."""


_PTX_VERSION = re.compile(r"^\s*\.version\s+(\d+\.\d+)", re.M)
_UNSUPPORTED = re.compile(r"Unsupported \.version (\d+\.\d+); current version is '(\d+\.\d+)'")


def ptx_version(ptx: str) -> str | None:
    """The PTX ISA version a PTX text declares (`.version 9.5` -> "9.5")."""
    m = _PTX_VERSION.search(ptx)
    return m[1] if m else None


def ptxas_only(ptx: str, arch: int, options=()) -> tuple[str, bytes]:
    """(the `ptxas -v` log, the cubin) from find_tool's ptxas; RuntimeError with its messages."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "k.ptx"), Path(tmp, "k.cubin")
        src.write_text(ptx)
        run = subprocess.run([find_tool("ptxas"), f"-arch=sm_{arch}", "-v", *options, str(src), "-o", str(out)],
                             capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"ptxas failed (sm_{arch}):\n{run.stderr}")
        return run.stderr + run.stdout, out.read_bytes()


def ptxas(ptx: str, arch: int, options=()) -> tuple[str, bytes]:
    """(the `ptxas -v` log, the cubin) of PTX text assembled for sm_`arch`: by ptxas, or by nvJitLink (which
    runs the ptxas of its own release) where ptxas is older than the PTX; PtxVersionError, naming both
    versions, where neither takes it."""
    try:
        return ptxas_only(ptx, arch, options)
    except RuntimeError as e:
        if not (old := _UNSUPPORTED.search(str(e))):
            raise
    try:
        return nvjitlink_assemble(ptx, arch, options)
    except ImportError as e:
        raise PtxVersionError(
            f"PTX .version {old[1]} (NVVM {versions_of_tools()['NVVM'].split()[0]}) is newer than "
            f"ptxas {versions_of_tools()['ptxas']} accepts (.version {old[2]}), "
            f"and nvJitLink cannot assemble it ({e}): install the ptxas of NVVM's release (pip install "
            "'nvidia-cuda-nvcc==<NVVM release>.*', or set KERNELS_PTXAS) or nvidia-nvjitlink of that release") from None


def nvjitlink_assemble(ptx: str, arch: int, options=()) -> tuple[str, bytes]:
    """(ptxas log, cubin) of PTX assembled by nvJitLink (cuda-bindings + nvidia-nvjitlink), with `-Xptxas=-v`;
    ImportError when nvJitLink is missing or older than the PTX."""
    try:
        from cuda.bindings import nvjitlink  # optional: the `gpu` extra
    except ImportError as e:
        raise ImportError(f"cuda.bindings.nvjitlink not importable: {e}") from None
    opts = [f"-arch=sm_{arch}", "-Xptxas=-v", *(f"-Xptxas={o}" for o in options)]
    try:
        handle = nvjitlink.create(len(opts), opts)
    except Exception as e:  # libnvJitLink not found
        raise ImportError(f"nvJitLink not loadable: {e}") from None
    try:
        data = ptx.encode()
        try:
            nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "k.ptx")
            nvjitlink.complete(handle)
        except nvjitlink.nvJitLinkError as e:
            raise ImportError(f"nvJitLink {'.'.join(map(str, nvjitlink.version()))} rejects it ({e}): "
                              f"{_nvjitlink_log(nvjitlink, handle, 'error')[:300]}") from None
        cubin = bytearray(nvjitlink.get_linked_cubin_size(handle))
        nvjitlink.get_linked_cubin(handle, cubin)
        return _nvjitlink_log(nvjitlink, handle, "info"), bytes(cubin)
    finally:
        nvjitlink.destroy(handle)


def _nvjitlink_log(nvjitlink, handle, which: str) -> str:
    size = getattr(nvjitlink, f"get_{which}_log_size")(handle)
    buf = bytearray(size)
    getattr(nvjitlink, f"get_{which}_log")(handle, buf)
    return buf.rstrip(b"\0").decode(errors="replace")


@functools.cache
def versions_of_tools() -> dict:
    """The releases of the CUDA compilers found here ("not found" where missing): NVVM (what numba-cuda loads),
    nvJitLink, NVRTC, ptxas (find_tool's) and the driver's CUDA version (where a driver loads)."""
    out = {"NVVM": nvvm_release()}
    for name, get in (("nvJitLink", _nvjitlink_version), ("NVRTC", _nvrtc_version), ("driver", _driver_version)):
        try:
            out[name] = get()
        except Exception as e:  # not installed or not loadable
            out[name] = f"not found ({type(e).__name__})"
    tool = find_tool("ptxas")
    release = re.search(r"release (\d+\.\d+)", subprocess.run([tool, "--version"], capture_output=True,
                                                               text=True).stdout) if tool else None
    out["ptxas"] = f"{release[1]} ({tool})" if release else "not found"
    return out


#: Compiles an empty kernel with the simulator off and prints the PTX header's release and .version, and libnvvm.
_NVVM_PROBE = """
from gpu.numba_cuda.jit import cuda, types
ptx, _ = cuda.compile_ptx(lambda a: None, (types.float32[::1],), cc=(8, 0))
from cuda.pathfinder import load_nvidia_dynamic_lib
release = ptx.split("release ", 1)[1].split(",", 1)[0] if "release " in ptx else "?"
version = ptx.split(".version ", 1)[1].split()[0]
print(f"{release} (PTX .version {version}, {load_nvidia_dynamic_lib('nvvm').abs_path})")
"""


def nvvm_release() -> str:
    """NVVM's CUDA release as numba.cuda compiles with it, the PTX version it writes and the library's path, from
    an empty kernel compiled in a child process; "not found (...)" with the last error line otherwise."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0",
           "PYTHONPATH": os.pathsep.join([str(child.ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run([sys.executable, "-c", _NVVM_PROBE], env=env, capture_output=True, text=True)
    if run.returncode:
        return f"not found ({(run.stderr.strip().splitlines() or ['?'])[-1][:200]})"
    return run.stdout.strip()


def _nvjitlink_version() -> str:
    from cuda.bindings import nvjitlink  # optional: the `gpu` extra

    return ".".join(map(str, nvjitlink.version()))


def _nvrtc_version() -> str:
    from cuda.bindings import nvrtc  # optional: the `gpu` extra

    _, major, minor = nvrtc.nvrtcVersion()
    return f"{major}.{minor}"


def _driver_version() -> str:
    from cuda.bindings import driver  # optional: the `gpu` extra

    err, version = driver.cuDriverGetVersion()
    if err != driver.CUresult.CUDA_SUCCESS:
        return f"none ({err.name})"
    return f"{version // 1000}.{version % 1000 // 10}"


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


# --- what to compile: every Kernel of every declared step ---------------------------------------------------

@dataclass(frozen=True)
class Config:
    """One numba.cuda kernel specialisation and the block sizes it is launched with."""

    kernel: str  # module.kernel[compile-time sizes]
    dtype: str
    blocks: tuple  # block sizes at which this compiled kernel may be launched
    signature: str  # for messages: the argument types
    default: bool = False  # compiled at the default launch of its step (what plots.model.oned models)
    dynamic_shared: dict = dataclasses.field(default_factory=dict)  # {block: most bytes a launch asks for}


def declared_kernels(backend: str, dtypes=DTYPES) -> list:
    """Every gpu.steps.Kernel the steps of `backend` declare, each (name, dtype) once: launched at the union of
    the blocks, with the most shared memory any step asks for at each, default where any step launches it by
    default."""
    merged = {}
    for step in registry.steps(backend):
        for dtype in dtypes:
            for k in step.kernels(dtype):
                old = merged.get((k.name, k.dtype))
                if old is None:
                    merged[k.name, k.dtype] = k
                    continue
                shared = {b: max(old.shared.get(b, 0), k.shared.get(b, 0)) for b in {*old.shared, *k.shared}}
                merged[k.name, k.dtype] = dataclasses.replace(old, blocks=tuple(sorted({*old.blocks, *k.blocks})),
                                                              shared=shared, default=old.default or k.default)
    return list(merged.values())


def configurations(dtypes=DTYPES):
    """[(Config, dispatcher, argument types)]: every numba.cuda kernel of every step, each dtype, each accepted
    launch. Imports numba.cuda: call with the simulator off."""
    out = []
    for k in declared_kernels("numba_cuda", dtypes):
        dispatcher, argtypes = k.build()
        out.append((Config(k.name, k.dtype, tuple(k.blocks), ", ".join(map(str, argtypes)), k.default,
                           dict(k.shared)), dispatcher, tuple(argtypes)))
    return out


# --- compiling (child process, simulator off) ---------------------------------------------------------------

def kernel_ptx(dispatcher, argtypes, archs) -> dict:
    """{arch: PTX} of one kernel specialisation, with the kernel's own launch_bounds and fastmath.

    numba-cuda's pipeline (typing, lowering to LLVM IR) runs once, at the highest architecture; NVVM
    then generates PTX for each (`CUDACodeLibrary.get_asm_strs(cc=...)`), as `numba.cuda.compile_ptx`
    does for one. numba-cuda-mlir (gpu/numba_cuda/jit.py), or an internal API that moved: one `compile_ptx` per
    architecture."""
    from gpu.numba_cuda.jit import COMPILER, cuda  # heavy: in the compile child, after the simulator is off

    opts = dispatcher.targetoptions
    kw = {"fastmath": bool(opts.get("fastmath")), "launch_bounds": opts.get("launch_bounds")}
    ccs = {arch: (arch // 10, arch % 10) for arch in archs}
    stand_in_device(ccs[max(archs)])
    _compile_pyfunc_with_fixup = None
    if COMPILER == "numba-cuda":
        try:
            from numba.cuda.compiler import _compile_pyfunc_with_fixup  # heavy, and internal: may have moved
        except ImportError:
            pass
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


def cuda_c_rows(archs=ARCHS) -> list[dict]:
    """Every CUDA C Kernel of every cupy step, compiled by NVRTC for each architecture (one compile per .cu
    file), as rows like `compile_all`'s: its blocks and the dynamic shared memory its launches ask for."""
    declared = declared_kernels("cupy")
    rows = []
    for source in sorted({k.source for k in declared}):
        usage = {(u.kernel, u.arch): u for u in nvrtc.check(tunables.FOLDER / source, archs)}
        for k in (k for k in declared if k.source == source):
            for arch in archs:
                u = usage[(k.name, arch)]
                rows.append({"kernel": f"{source}:{k.name}", "dtype": k.dtype, "blocks": tuple(k.blocks),
                             "arch": arch, "registers": u.registers, "shared": u.shared, "stack": u.stack,
                             "spill_stores": u.spill_stores, "spill_loads": u.spill_loads,
                             "dynamic_shared": dict(k.shared), "default": k.default})
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
            if r["shared"] + dynamic > SHARED_LIMIT:
                bad.append(f"{where}: {r['shared']} B static + {dynamic} B dynamic shared memory at block={block} "
                           f"> {SHARED_LIMIT} B (the launch does not opt in to more)")
    return bad


# --- the parent side: one cached child process --------------------------------------------------------------

def run(archs=ARCHS, want_sass=True, only_default=False, cache=True) -> list[dict]:
    """`compile_all` in a child process with the simulator off, cached by content (plots.model.child);
    RuntimeError with its log. With `want_sass` (the default, so that the model shares the cache) the
    default-launch rows carry their SASS."""
    args = ["--child", "--arch", *archs, *["--sass"] * want_sass, *["--default"] * only_default, "--workers", WORKERS]
    return child.run_json("plots.model.resources", args, simulator=False, name="numba",
                          key=(tuple(archs), want_sass, only_default, find_tool("ptxas")), cache=cache,
                          what="real compile")


def compile_named(wanted, arch: int, want_sass=False) -> dict:
    """{"name:dtype": row, with its SASS if `want_sass`} of the numba.cuda kernels `wanted` ((name, dtype) pairs,
    named as configurations() names them) for sm_`arch`; a name of the gemm layer's conv_kernel that
    configurations() does not list is built from its sizes, as the launch code builds it. Child process, simulator
    off."""
    from numba import int64, types  # heavy: in the compile child, after the simulator is switched off

    from gpu.numba_cuda import layer_gemm as gemm  # heavy: numba.cuda, as above

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
            raise SystemExit(f"{name} ({dtype}) is not among plots.model.resources.configurations()")
        d, a = configs[(name, dtype)]
        out[f"{name}:{dtype}"] = compile_one(d, a, (arch,), want_sass)[arch]
    return out


def run_named(key: str, arch: int, cache=True) -> dict:
    """compile_named for one kernel ("name:dtype"), with its SASS, in a cached child process."""
    name, dtype = key.rsplit(":", 1)
    return child.run_json("plots.model.resources", ["--kernels", json.dumps([[name, dtype]]), "--arch", arch, "--sass"],
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
    ap = argparse.ArgumentParser(prog="python -m plots.model.resources", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, nargs="+", default=list(ARCHS))
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # compile here (simulator off)
    ap.add_argument("--sass", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--default", action="store_true", help="only the kernels of the backends' default launches")
    ap.add_argument("--warn", action="store_true", help="report failed checks as warnings, exit status 0")
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--kernels", help=argparse.SUPPRESS)  # compile these (JSON [[name, dtype], ...]) here
    args = ap.parse_args(argv)
    if args.kernels:
        json.dump(compile_named([tuple(w) for w in json.loads(args.kernels)], args.arch[0], args.sass), sys.stdout)
        return 0
    if args.child:
        json.dump(compile_all(args.arch, args.sass, args.default, workers=args.workers), sys.stdout)
        return 0
    if problem := toolchain_problem():
        print(f"plots.model.resources: {problem}", file=sys.stderr)
        return 2
    rows = run(args.arch, cache=not args.no_cache, only_default=args.default)
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    bad = failures(rows)
    for line in bad:
        print(f"{'warning: ' if args.warn else ''}{line}", file=sys.stderr)
    return int(bool(bad) and not args.warn)


if __name__ == "__main__":
    sys.exit(main())
