"""Run CUDA C kernels on the CPU: g++ builds the unmodified `.cu` source against `cuda_emu.h`.

    mod = Module(code, ["corr_tiled<float>"], filename="kernels_broken.cu")
    kern = mod.get_function("corr_tiled<float>")
    kern((blocks,), (256,), (x, w, y, n, k), shared_mem=nbytes)  # as with cupy.RawKernel

Arrays are NumPy arrays: emulated device memory is host memory. Each source becomes a shared
library (the kernels plus a launcher per name expression) linked to the scheduler, runtime.cpp,
which is built once. Every CUDA thread is a fiber with a 64 KiB stack; the threads of a block take
turns on one OS thread and switch only at barriers and warp intrinsics, and blocks are spread over
KERNELS_EMU_THREADS OS threads (default min(cores, 4)). Between two barriers the threads run one
after another in the launch's `order`: "forward", "reverse" or "random" (seeded by `seed`,
reshuffled every phase), by default KERNELS_EMU_ORDER and KERNELS_EMU_SEED. A race between threads
of a block shows up as a result that depends on the order. Shared memory starts as 0xFF bytes (NaN)
in every block.

Strict mode (the default) raises EmulatorError, naming the thread, block and source line, for: a
thread that exits while others wait at __syncthreads; __syncthreads reached from different lines;
a warp intrinsic whose mask leaves out the caller or differs between lanes; a shuffle that reads a
lane that did not take part; deadlock; __trap() and a failed assert(). `strict=False` lets exited
threads count as arrived and different lines meet, as on sm_70 and later.

Arguments are checked against the kernel's C++ parameter types, which CuPy cannot do: an array must
have the pointer's element type, and a NumPy scalar the parameter's type. CuPy passes a Python int
as int64 and a Python float as float64, so these fit only 64-bit integer and double parameters.

Builds are cached in $KERNELS_EMU_CACHE (default ~/.cache/kernels-emu), keyed by their inputs and the
compiler. Each goes in by an atomic rename beside a record of its size and SHA-256 (`<build>.sha256`,
renamed into place after it), and is verified against that record before it is loaded: a build cut short,
emptied or overwritten is built again rather than mapped (a truncated shared library kills the process with
SIGBUS when the loader touches its missing pages). Every kernel library links the runtime even when the
kernel names no CUDA built-in (`--no-as-needed`: the launcher the emulator calls lives there). $CXX names
the compiler (default g++; it must be a C++20 compiler that links the C++ runtime).
Only -D, -U and -I options reach it; NVRTC-only options are ignored. A bad setting (CXX,
KERNELS_EMU_CACHE, KERNELS_EMU_THREADS, KERNELS_EMU_ORDER, KERNELS_EMU_SEED) is named in the error.

AddressSanitizer: `asan=True`, or KERNELS_EMU_ASAN=1, builds the kernels with -fsanitize=address,
which reports out-of-bounds accesses to NumPy buffers and to dynamic shared memory past `shared_mem`.
The ASan runtime must be loaded before Python starts, and a report aborts the process:

    KERNELS_EMU_ASAN=1 LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        python -m pytest -m emulated

`asan_env()` returns this environment for a subprocess.

Limits: a thread that spins on memory written by another thread of its block never yields, so it
hangs; g++ does not fuse a*b+c into an FMA as nvcc does, so results differ in the last bits; a wild
pointer or a stack overflow crashes the process unless ASan catches it first.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import numbers
import operator
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HEADER = Path(__file__).with_name("cuda_emu.h")  # what kernel sources see
ABI = Path(__file__).with_name("abi.h")  # shared by kernels and the runtime
RUNTIME = Path(__file__).with_name("runtime.cpp")  # the scheduler
ORDERS = ("forward", "reverse", "random")
CXXFLAGS = ("-std=c++20", "-O2", "-fPIC", "-fno-extern-tls-init", "-pthread")
# Every symbol of a library must resolve when it is linked: a C compiler as CXX then fails here, with
# the missing C++ runtime symbols named, instead of loading only where libstdc++ happens to be loaded.
LINK_CHECK = ("-Wl,-z,defs",)
# A kernel that names no CUDA built-in references nothing in the runtime, and a linker that drops unused
# libraries (--as-needed, the default of some distributions) would leave out the launcher the emulator calls.
NO_AS_NEEDED = "-Wl,--no-as-needed"
ASAN_FLAGS = ("-fsanitize=address", "-fno-omit-frame-pointer", "-g")
SHARED_DEFAULT = 48 << 10  # dynamic shared memory allowed without opting in
SHARED_OPTIN = 227 << 10  # the most a kernel can opt in to (sm_90)

# C++ parameter type (as cuda_emu.h spells it) -> NumPy dtype.
DTYPES = {"bool": np.bool_, "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8,
          "short": np.int16, "unsigned short": np.uint16, "int": np.int32, "unsigned int": np.uint32,
          "long": np.int64, "unsigned long": np.uint64, "long long": np.int64,
          "unsigned long long": np.uint64, "float": np.float32, "double": np.float64}


class EmulatorError(RuntimeError):
    """A kernel broke a CUDA rule (strict mode), trapped, or deadlocked."""


class CompileError(EmulatorError):
    """g++ rejected the source, or there is no g++."""


def compiler() -> str:
    return os.environ.get("CXX", "g++")


def toolchain_problem() -> str | None:
    """Why the emulator cannot build kernels here (e.g. "g++ not found"), or None."""
    for tool in (compiler(), "readelf", "objcopy"):
        if shutil.which(tool) is None:
            return f"{'CXX=' if tool == compiler() else ''}{tool} not found"
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("KERNELS_EMU_CACHE") or Path.home() / ".cache" / "kernels-emu")


def _cache_setting() -> str:
    """How the cache directory was chosen, for error messages."""
    if os.environ.get("KERNELS_EMU_CACHE"):
        return f"KERNELS_EMU_CACHE={os.environ['KERNELS_EMU_CACHE']}"
    return f"the build cache {cache_dir()} (set KERNELS_EMU_CACHE to choose another)"


def _env_int(name: str, default: int, low: int) -> int:
    """The integer setting `name` of the environment (>= low), or `default` when unset."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {text!r}")
    return value


# ------------------------------------------------------------------------------------------------
# Building

def build(code: str, name_expressions, options=(), *, filename="kernel.cu", asan=False) -> Path:
    """Compile `code` and a launcher per name expression into a cached shared library."""
    if not name_expressions:
        raise ValueError(f"{filename}: no name expressions: the emulator builds a launcher for each kernel "
                         "listed on a `// name_expressions: kernel<float>, ...` line of the source")
    runtime = _runtime()
    flags = [*CXXFLAGS, *(ASAN_FLAGS if asan else ()), *gxx_options(options)]
    unit = _translation_unit(code, name_expressions, filename)
    includes = [f[2:] for f in flags if f.startswith("-I")]
    so = _cached("kernel", [compiler(), runtime.name, HEADER.read_text(), unit, *flags, *LINK_CHECK, NO_AS_NEEDED,
                            *_included(code, includes)])
    if not _verified(so):
        with tempfile.TemporaryDirectory(dir=so.parent) as tmp:
            src, obj, lib = (Path(tmp, "kernel" + ext) for ext in (".cpp", ".o", ".so"))
            src.write_text(unit)
            _run([compiler(), *flags, "-c", str(src), "-o", str(obj)], filename)
            # Every `extern __shared__` array is an undefined thread-local symbol: point it at the
            # runtime's dynamic shared memory.
            renames = [f"--redefine-sym={s}=__emu_dyn_smem"
                       for s in _undefined_tls(obj) if not s.startswith("__emu")]
            if renames:
                _run(["objcopy", *renames, str(obj)], filename)
            _run([compiler(), *flags, "-shared", *LINK_CHECK, str(obj), NO_AS_NEEDED, str(runtime), "-Xlinker",
                  "-rpath", "-Xlinker", str(runtime.parent), "-o", str(lib)], filename)
            _publish(lib, so)
    return so


def _runtime() -> Path:
    """The scheduler library that kernel modules link (with or without ASan), built once."""
    so = _cached("runtime", [compiler(), ABI.read_text(), RUNTIME.read_text(), *CXXFLAGS])
    if not _verified(so):
        with tempfile.TemporaryDirectory(dir=so.parent) as tmp:
            lib = Path(tmp, so.name)
            _run([compiler(), *CXXFLAGS, "-fvisibility=hidden", "-shared", *LINK_CHECK, f"-Wl,-soname,{so.name}",
                  str(RUNTIME), "-o", str(lib)], RUNTIME.name)
            _publish(lib, so)
    return so


def _record(path: Path) -> str:
    """'<size> <sha256>' of the file at `path`."""
    data = path.read_bytes()
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def _publish(built: Path, so: Path) -> None:
    """Move a finished build into the cache, then its record beside it (each by an atomic rename)."""
    record = built.with_name(built.name + ".sha256")
    record.write_text(_record(built))
    os.replace(built, so)
    os.replace(record, so.with_name(so.name + ".sha256"))


def _verified(so: Path) -> bool:
    """True when the cached build `so` exists and matches its record (size and SHA-256)."""
    try:
        return so.with_name(so.name + ".sha256").read_text().strip() == _record(so)
    except OSError:
        return False


def _cached(kind: str, parts: list[str]) -> Path:
    """Where the build of `parts` lives in the cache (the directory is created)."""
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache_dir()):
            pass
    except OSError as e:
        raise EmulatorError(f"{_cache_setting()}: cannot write builds there ({e.strerror or e})") from None
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
    return cache_dir() / f"{kind}-{key}.so"


def gxx_options(options) -> list[str]:
    """The -D, -U and -I options among NVRTC `options`."""
    return [o for o in options if o[:2] in ("-D", "-U", "-I")]


def _translation_unit(code: str, names, filename: str) -> str:
    wrappers = "".join(
        f'extern "C" __attribute__((visibility("default"))) void __emu_thunk_{i}(void** a) '
        f"{{ cuda_emu::invoke(&{name}, a); }}\n"
        f'extern "C" __attribute__((visibility("default"))) const char* __emu_signature_{i}() '
        f"{{ return cuda_emu::signature(&{name}); }}\n"
        for i, name in enumerate(names))
    return f'#include "{HEADER}"\n#line 1 "{filename}"\n{code}\n#line 1 "<emulator wrappers>"\n{wrappers}'


_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def _included(code: str, dirs, seen=None) -> list[str]:
    """Texts of the files that `code` includes with quotes, recursively (for the cache key)."""
    seen = set() if seen is None else seen
    texts = []
    for name in _INCLUDE.findall(code):
        path = next((Path(d, name) for d in dirs if Path(d, name).is_file()), None)
        if path and path.resolve() not in seen:
            seen.add(path.resolve())
            text = path.read_text()
            texts += [text, *_included(text, [path.parent, *dirs], seen)]
    return texts


def _run(cmd: list[str], filename: str) -> None:
    tool = f"CXX={cmd[0]}" if cmd[0] == compiler() else cmd[0]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise CompileError(f"{tool}: cannot run it ({e.strerror or e})") from None
    if result.returncode:
        log = (result.stderr.strip() or result.stdout.strip())[-6000:]
        if not log:
            raise CompileError(f"{tool} failed on {filename} with exit status {result.returncode} and no message: "
                               "CXX must name a C++20 compiler such as g++")
        hint = ("\n(undefined references at the link: CXX must name a C++20 compiler that links the C++ runtime, "
                "such as g++)" if "undefined reference" in log else "")
        raise CompileError(f"{tool} failed on {filename}:\n{log}{hint}")


def _undefined_tls(obj: Path) -> list[str]:
    table = subprocess.run(["readelf", "-sW", str(obj)], capture_output=True, text=True, check=True).stdout
    return sorted({f[7] for f in map(str.split, table.splitlines())
                   if len(f) >= 8 and f[3] == "TLS" and f[6] == "UND"})


# ------------------------------------------------------------------------------------------------
# AddressSanitizer

def asan_runtime() -> str | None:
    """Path of the compiler's libasan.so, or None."""
    try:
        out = subprocess.run([compiler(), "-print-file-name=libasan.so"], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    path = out.stdout.strip()
    return path if os.path.isabs(path) else None


def asan_env() -> dict[str, str]:
    """Environment for a Python subprocess whose emulated kernels run under AddressSanitizer."""
    runtime = asan_runtime()
    if runtime is None:
        raise CompileError(f"{compiler()} has no libasan.so")
    return {**os.environ, "KERNELS_EMU_ASAN": "1", "LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0"}


def _asan_loaded() -> bool:
    return "libasan" in Path("/proc/self/maps").read_text()


# ------------------------------------------------------------------------------------------------
# Loading and launching

class Module:
    """The emulated cupy.RawModule: built (or found in the cache) at `path`; get_function(name)."""

    def __init__(self, code: str, name_expressions, options=(), *, filename="kernel.cu", asan=None):
        asan = os.environ.get("KERNELS_EMU_ASAN") == "1" if asan is None else asan
        if asan and not _asan_loaded():
            raise EmulatorError("an ASan build needs the ASan runtime loaded first: run Python with "
                                "LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0")
        self.name_expressions = tuple(name_expressions)
        self.path = build(code, self.name_expressions, options, filename=filename, asan=asan)
        try:
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as e:
            raise EmulatorError(f"{filename}: the build by CXX={compiler()} does not load ({e}); CXX must name "
                                "a C++20 compiler that links the C++ runtime, such as g++") from None
        self._launch = self._lib["__emu_launch"]
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [*[ctypes.c_void_p] * 5, ctypes.c_ulonglong, ctypes.c_int, ctypes.c_ulonglong,
                                 ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_ulonglong]
        self._kernels: dict[str, Kernel] = {}

    def get_function(self, name: str) -> Kernel:
        if name not in self._kernels:
            self._kernels[name] = self._kernel(name)
        return self._kernels[name]

    def _kernel(self, name: str) -> Kernel:
        if name not in self.name_expressions:
            raise KeyError(f"{name!r} is not among the name expressions {self.name_expressions} "
                           "(the emulator builds a launcher for each)")
        i = self.name_expressions.index(name)
        signature = self._lib[f"__emu_signature_{i}"]
        signature.restype = ctypes.c_char_p
        thunk, module_tls = (ctypes.cast(self._lib[s], ctypes.c_void_p).value
                             for s in (f"__emu_thunk_{i}", "__emu_module_tls"))
        return Kernel(name, functools.partial(self._launch, thunk, module_tls), signature().decode())


class Kernel:
    """One emulated kernel, called like cupy.RawKernel: kern(grid, block, args, shared_mem=0).

    `signature` holds the C++ parameter types, e.g. ("const float*", "float*", "long long").
    """

    def __init__(self, name: str, launch, signature: str):
        self.name = name
        self.signature = tuple(signature.split(",")) if signature else ()
        self.max_dynamic_shared_size_bytes = SHARED_DEFAULT
        self._launch = launch

    def __call__(self, grid, block, args, *, shared_mem=0, order=None, seed=None, strict=True):
        grid, block, shared_mem = _dim3("grid", grid), _dim3("block", block), operator.index(shared_mem)
        _check_launch(grid, block, shared_mem, self.max_dynamic_shared_size_bytes)
        if order is None:
            order = os.environ.get("KERNELS_EMU_ORDER") or "forward"
            if order not in ORDERS:
                raise ValueError(f"KERNELS_EMU_ORDER: expected one of {ORDERS}, got {order!r}")
        if order not in ORDERS:
            raise ValueError(f"order: expected one of {ORDERS}, got {order!r}")
        seed = _env_int("KERNELS_EMU_SEED", 0, 0) if seed is None else seed
        cells = self._cells(args)
        argv = (ctypes.c_void_p * max(len(cells), 1))(*(c.ctypes.data for c in cells))
        error = ctypes.create_string_buffer(4096)
        if self._launch(argv, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block),
                        shared_mem, ORDERS.index(order), seed, strict, _workers(), error, len(error)):
            raise EmulatorError(f"{self.name}: {error.value.decode(errors='replace')}")

    def _cells(self, args) -> list[np.ndarray]:
        """One small array per argument holding the bytes the kernel parameter receives."""
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name} takes {len(self.signature)} arguments "
                            f"({', '.join(self.signature)}), got {len(args)}")
        return [np.array([_pointer(i, t, a)], np.uintp) if t.endswith("*") else np.array(_scalar(i, t, a))
                for i, (t, a) in enumerate(zip(self.signature, args, strict=True))]


def _pointer(i: int, param: str, a) -> int:
    if a is None:
        return 0
    if not isinstance(a, np.ndarray):
        raise TypeError(f"argument {i} ({param}): expected a numpy array, got {type(a).__name__}")
    element = param.removeprefix("const ").removesuffix("*")
    if element != "void" and a.dtype != DTYPES[element]:
        raise TypeError(f"argument {i} ({param}): expected dtype {np.dtype(DTYPES[element])}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"argument {i} ({param}): the array is not C-contiguous")
    if not param.startswith("const ") and not a.flags.writeable:
        raise ValueError(f"argument {i} ({param}): the array is read-only but the parameter is not const")
    return a.ctypes.data


def _scalar(i: int, param: str, v) -> np.generic:
    want = np.dtype(DTYPES[param])
    if isinstance(v, np.generic):
        if v.dtype != want:
            raise TypeError(f"argument {i} ({param}): expected {want}, got {v.dtype}")
        return v
    if not isinstance(v, (bool, int, float)):
        raise TypeError(f"argument {i} ({param}): expected a number, got {type(v).__name__}")
    kind = bool if isinstance(v, bool) else int if isinstance(v, int) else float
    passed = np.dtype({bool: np.bool_, int: np.int64, float: np.float64}[kind]).type(v)  # as CuPy does
    if want != passed.dtype and not (want == np.uint64 and kind is int and v >= 0):
        raise TypeError(f"argument {i} ({param}): expected {want}, got a Python {kind.__name__}, which CuPy "
                        f"passes as {passed.dtype}; wrap it in numpy.{want.name}(...)")
    return want.type(passed)


def _dim3(name: str, v) -> tuple[int, int, int]:
    t = (v,) if isinstance(v, numbers.Integral) else tuple(v)
    if not 1 <= len(t) <= 3 or not all(isinstance(x, numbers.Integral) and x >= 1 for x in t):
        raise ValueError(f"{name}: expected 1 to 3 positive integers, got {v!r}")
    return (*map(int, t), 1, 1)[:3]


def _check_launch(grid, block, shared_mem: int, shared_limit: int) -> None:
    if block[0] > 1024 or block[1] > 1024 or block[2] > 64 or block[0] * block[1] * block[2] > 1024:
        raise ValueError(f"block {block}: at most 1024 threads, (1024, 1024, 64) per dimension")
    if grid[0] >= 2**31 or grid[1] > 65535 or grid[2] > 65535:
        raise ValueError(f"grid {grid}: at most (2**31 - 1, 65535, 65535)")
    if not 0 <= shared_mem <= min(shared_limit, SHARED_OPTIN):
        raise ValueError(f"shared_mem={shared_mem}: the kernel allows {shared_limit} bytes "
                         "(raise max_dynamic_shared_size_bytes, as with cupy.RawKernel)")


def _workers() -> int:
    """OS threads that run blocks: KERNELS_EMU_THREADS, default min(cores, 4)."""
    return _env_int("KERNELS_EMU_THREADS", min(os.cpu_count() or 1, 4), 1)
