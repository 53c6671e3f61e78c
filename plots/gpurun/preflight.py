"""What the GPU run needs, checked with no device required, in well under a minute:

    python -m plots.gpurun.preflight [--arch 90] [--only compile ...] [--out DIR]   # exit 1 when a piece is missing

Each check prints one line: "ok", "FAIL" (the run cannot work: what to do is on the line), "warn" (a later step
will be skipped) or "device" (only a device is missing: a machine without one passes). The checks:

    python      the interpreter's version
    imports     the packages the run imports (numpy, numba, numba-cuda, cupy, cuda-bindings, cuda-core, scipy, ...)
    project     the playground imports from the repository root and lists its backends
    compile     a project kernel (the default forward step of numba_cuda) compiled for real by numba-cuda for the
                device's architecture, then assembled twice: by the linker numba-cuda launches through
                (cuda.core: nvJitLink, else the driver), and by the assembler of the resource checks (ptxas, or
                nvJitLink where ptxas is older than the PTX: plots/model/resources.py); a PTX .version newer
                than both is named with both versions
    nvrtc       NVRTC compiles a .cu file of gpu/cupy/ for that architecture
    collection  pytest collects the tests the run runs (an import they need is missing: it fails here)
    tools       ncu and compute-sanitizer (their steps are skipped without them)
    disk        free space where the run writes
    memory      host memory available
    device      a CUDA device and its driver

The compile check runs in this process with numba's simulator off (set before numba loads).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "0")  # a real compile: before numba (or kernels._env) loads

import argparse  # noqa: E402  (after the simulator switch above)
import importlib  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the playground, from the repository root (not installed on a GPU machine)
#: The modules the run imports, with the distribution that brings each.
MODULES = (("numpy", "numpy"), ("numba", "numba"), ("numba_cuda", "numba-cuda[cu13]"), ("cupy", "cupy-cuda13x"),
           ("cuda.bindings", "cuda-bindings"), ("cuda.core", "cuda-core"), ("scipy", "scipy"),
           ("matplotlib", "matplotlib"), ("pytest", "pytest"), ("xdist", "pytest-xdist"),
           ("hypothesis", "hypothesis"), ("tqdm", "tqdm"))
#: The test files of the run's test step: collecting them imports everything the tests need.
TEST_FILES = ("tests/test_gpu_device.py", "tests/test_gpurun.py", "tests/test_gpu_backends.py")
TOOLS = ("ncu", "compute-sanitizer")
MIN_DISK_GB, MIN_MEMORY_GB = 5.0, 8.0


@dataclass(frozen=True)
class Result:
    name: str
    level: str  # "ok", "FAIL", "warn" or "device"
    line: str

    def __str__(self):
        return f"{self.level:<6} {self.name:<10} {self.line}"


def check_python(args) -> Result:
    ok = sys.version_info >= (3, 10)
    return Result("python", "ok" if ok else "FAIL", f"{platform.python_version()} ({sys.executable})"
                  + ("" if ok else ": the playground needs Python 3.10 or newer"))


def check_imports(args) -> Result:
    missing = []
    for module, dist in MODULES:
        try:
            importlib.import_module(module)
        except Exception as e:  # ImportError, or a package that fails while loading
            missing.append(f"{module} ({type(e).__name__}: {str(e)[:80]}; pip install {dist})")
    if missing:
        return Result("imports", "FAIL", "not importable: " + "; ".join(missing))
    return Result("imports", "ok", ", ".join(m for m, _ in MODULES))


def check_project(args) -> Result:
    try:
        import kernels  # heavy: numba and every backend

        states = {name: st.state for name, st in kernels.backends().items()}
    except Exception as e:
        return Result("project", "FAIL", f"import kernels from {ROOT} failed: {type(e).__name__}: {e}")
    return Result("project", "ok", ", ".join(f"{k} {v}" for k, v in states.items()))


def device_arch() -> int | None:
    """The compute capability of CUDA device 0 as 90, 80, ... (None without a device)."""
    try:
        from cuda.bindings import driver  # optional: the `gpu` extra

        ok = driver.CUresult.CUDA_SUCCESS
        if driver.cuInit(0)[0] != ok:
            return None
        err, dev = driver.cuDeviceGet(0)
        attr = driver.CUdevice_attribute
        major = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)[1]
        minor = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)[1]
        return 10 * major + minor if err == ok else None
    except Exception:  # no bindings, no driver
        return None


def check_compile(args) -> Result:
    """The default forward kernel of numba_cuda: NVVM -> PTX -> the launch linker and the resource assembler."""
    try:
        from gpu.numba_cuda import jit  # heavy: numba.cuda (simulator off)
        from plots.model import resources  # heavy: the registry and every backend

        kernel = next(k for k in resources.declared_kernels("numba_cuda", ("float32",))
                      if k.default and k.name.startswith("ladder.regwin_kernel"))
        dispatcher, argtypes = kernel.build()
        ptx = resources.kernel_ptx(dispatcher, argtypes, (args.arch,))[args.arch]
    except Exception as e:
        return Result("compile", "FAIL", f"numba-cuda cannot compile a project kernel for sm_{args.arch}: "
                                         f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
    where = (f"{jit.COMPILER}: {kernel.name} float32 -> PTX .version {resources.ptx_version(ptx)} "
             f"(NVVM {resources.versions_of_tools()['NVVM'].split()[0]})")
    link = launch_link(ptx, args.arch)
    if link.startswith("FAIL"):
        return Result("compile", "FAIL", f"{where}; {link[5:]}")
    try:
        log, _ = resources.ptxas(ptx, args.arch)
    except Exception as e:  # PtxVersionError names both versions; ptxas missing: TypeError on None
        tool = resources.find_tool("ptxas")
        why = str(e) if tool else "ptxas not found (pip install nvidia-cuda-nvcc, or set KERNELS_PTXAS)"
        return Result("compile", "FAIL", f"{where}; resource check: {' '.join(why.split())[:400]}")
    usage = resources.parse_ptxas(log)
    return Result("compile", "ok", f"{where}; {link}; resource check: {usage['registers']} registers, "
                                   f"{usage['spill_stores']} B spilled")


def nvjitlink_version() -> str | None:
    try:
        from cuda.bindings import nvjitlink  # optional: the `gpu` extra

        return ".".join(map(str, nvjitlink.version()))
    except Exception:  # not installed, or libnvJitLink not loadable
        return None


def launch_link(ptx: str, arch: int) -> str:
    """How the linker numba-cuda launches through (cuda.core.Linker: nvJitLink, else the driver's JIT) takes the
    PTX: "linked by ..." or "FAIL <why, what to do>". The driver's JIT takes no PTX newer than its CUDA release;
    without a device, the ptxas here stands for that release."""
    from plots.model import resources

    if nvjitlink_version() is None and device_arch() is None:
        try:
            resources.ptxas_only(ptx, arch)
        except Exception as e:
            return (f"FAIL no nvJitLink (pip install nvidia-nvjitlink): numba-cuda would link through the driver, "
                    f"whose JIT takes no PTX newer than its CUDA release, and ptxas "
                    f"{resources.versions_of_tools()['ptxas']} rejects this PTX "
                    f"({' '.join(str(e).split())[-120:]})")
        return "linked by the driver at launch (no nvJitLink): ptxas of this release takes the PTX"
    try:
        from cuda.core import Linker, LinkerOptions, ObjectCode  # optional: the `gpu` extra

        linker = Linker(ObjectCode.from_ptx(ptx.encode()), options=LinkerOptions(arch=f"sm_{arch}"))
        backend = linker.which_backend()
        cubin = linker.link("cubin")
    except Exception as e:
        return f"FAIL the linker numba-cuda launches through rejects the PTX: {' '.join(str(e).split())[:300]}"
    return f"linked by {backend} {nvjitlink_version() or ''} ({len(cubin.code)} B cubin)"


def check_nvrtc(args) -> Result:
    from gpu.cupy import nvrtc

    if problem := nvrtc.nvrtc_problem():
        return Result("nvrtc", "FAIL", f"{problem} (pip install cuda-bindings nvidia-cuda-nvrtc)")
    try:
        rows = nvrtc.check(nvrtc.tunables.FOLDER / "ladder.cu", (args.arch,))
    except Exception as e:
        return Result("nvrtc", "FAIL", f"NVRTC cannot compile gpu/cupy/ladder.cu for sm_{args.arch}: "
                                       f"{' '.join(str(e).split())[:300]}")
    return Result("nvrtc", "ok", f"gpu/cupy/ladder.cu for sm_{args.arch}: {len(rows)} kernels")


def check_collection(args) -> Result:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *TEST_FILES]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("NUMBA_ENABLE_CUDASIM", None)  # as the run's test step runs them
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    tail = [line for line in run.stdout.splitlines() if line.strip()][-1:] or ["?"]
    if run.returncode:
        errors = [line for line in (run.stdout + run.stderr).splitlines() if "Error" in line][:3]
        return Result("collection", "FAIL", f"pytest cannot collect {' '.join(TEST_FILES)}: "
                                            f"{'; '.join(errors) or tail[0]}")
    return Result("collection", "ok", tail[0])


def find_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/local/cuda/bin")


def check_tools(args) -> Result:
    found = {name: find_tool(name) for name in TOOLS}
    missing = [name for name, path in found.items() if not path]
    line = ", ".join(f"{name} {path or 'not found'}" for name, path in found.items())
    return Result("tools", "warn" if missing else "ok",
                  line + (f": the {'/'.join(missing)} step(s) will be skipped" if missing else ""))


def check_disk(args) -> Result:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.out).free / 2**30
    ok = free >= args.min_disk_gb
    return Result("disk", "ok" if ok else "FAIL", f"{free:.1f} GiB free in {args.out}"
                  + ("" if ok else f" (< {args.min_disk_gb} GiB): free some space or pass --out elsewhere"))


def available_memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def check_memory(args) -> Result:
    free = available_memory_gb()
    ok = free >= args.min_memory_gb
    return Result("memory", "ok" if ok else "FAIL", f"{free:.1f} GiB available"
                  + ("" if ok else f" (< {args.min_memory_gb} GiB): the host references need more"))


def check_device(args) -> Result:
    arch = device_arch()
    if arch is None:
        return Result("device", "device", "no CUDA device or driver here: everything else is checked")
    return Result("device", "ok", f"compute capability sm_{arch}")


CHECKS = {"python": check_python, "imports": check_imports, "project": check_project, "compile": check_compile,
          "nvrtc": check_nvrtc, "collection": check_collection, "tools": check_tools, "disk": check_disk,
          "memory": check_memory, "device": check_device}


def run(args) -> list[Result]:
    """Every check named in args.only (all by default), in order; one that raises is a FAIL."""
    results = []
    for name in args.only or CHECKS:
        try:
            result = CHECKS[name](args)
        except Exception as e:
            result = Result(name, "FAIL", f"{type(e).__name__}: {e}")
        print(result, flush=True)
        results.append(result)
    return results


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m plots.gpurun.preflight", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, help="compile for sm_ARCH (default: the device's, else 90)")
    ap.add_argument("--only", nargs="+", choices=list(CHECKS), help="run only these checks")
    ap.add_argument("--out", default=str(ROOT / "plots" / "results"), help="where the run writes (disk check)")
    ap.add_argument("--min-disk-gb", type=float, default=MIN_DISK_GB)
    ap.add_argument("--min-memory-gb", type=float, default=MIN_MEMORY_GB)
    args = ap.parse_args(argv)
    args.arch = args.arch or device_arch() or 90
    return args


def main(argv=None) -> int:
    results = run(parse_args(argv))
    failed = [r.name for r in results if r.level == "FAIL"]
    print(f"preflight: {'FAILED: ' + ', '.join(failed) if failed else 'ready'}"
          f"{' (no device here)' if any(r.level == 'device' for r in results) else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
