"""Compile CUDA C files with NVRTC for sm_80 and sm_90 and tabulate what ptxas reports: the resources of a
kernel without a GPU (`kernels check` prints them for a kernel of yours).

    python -m gpu.cupy.nvrtc [FILE.cu ...]   # default: every .cu of gpu/cupy/; exit status 1 on a spill

A file of gpu/cupy/ is compiled with its options from gpu/cupy/tunables.py and the instantiations its launcher
lists (NAMES), as CuPy and the emulator compile it; another file with the name expressions on its
`// name_expressions:` lines. NVRTC (pip packages cuda-bindings and nvidia-cuda-nvrtc) needs neither a driver
nor a GPU, and
takes about 0.15 s per module and architecture. Template kernels are instantiated through the name
expressions a source declares on `// name_expressions:` lines, the list load() gives CuPy.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import astuple, dataclass
from pathlib import Path

from gpu.cupy import correlate, ladder, layer, layer_gemm, tunables
from gpu.cupy.loader import declared_names

ARCHS = (80, 90)
#: The instantiations of each .cu file of gpu/cupy/, from its launcher.
PRODUCT_NAMES = {m.SOURCE.name: m.NAMES for m in (correlate, ladder, layer, layer_gemm)}


@dataclass(frozen=True)
class Usage:
    """ptxas resource usage of one kernel on one architecture (sizes in bytes)."""

    file: str
    kernel: str  # the name expression, or the mangled name of a kernel without one
    arch: int
    registers: int
    shared: int  # static shared memory
    spill_stores: int
    spill_loads: int
    stack: int


class CompileError(RuntimeError):
    """NVRTC rejected a source; the message holds its log."""


def nvrtc_problem() -> str | None:
    """Why NVRTC cannot run here (e.g. "cuda-bindings not installed"), or None."""
    try:
        from cuda.bindings import nvrtc  # optional: the `gpu` extra
    except ImportError:
        return "cuda-bindings not installed"
    try:
        nvrtc.nvrtcVersion()
    except Exception as e:  # the bindings load libnvrtc (pip: nvidia-cuda-nvrtc) on first use
        return f"libnvrtc not loadable ({e})"
    return None


def compile_log(code: str, name_expressions, arch: int, options=(), filename="kernel.cu", *, cubin=False):
    """(ptxas log, {mangled name: name expression}) from compiling `code` to a cubin for sm_`arch`;
    with `cubin`, (ptxas log, cubin bytes, {mangled name: name expression})."""
    from cuda.bindings import nvrtc  # optional: the `gpu` extra (callers check nvrtc_problem() first)

    ok = nvrtc.nvrtcResult.NVRTC_SUCCESS
    err, prog = nvrtc.nvrtcCreateProgram(code.encode(), filename.encode(), 0, [], [])
    if err != ok:
        raise CompileError(f"{filename}: nvrtcCreateProgram: {err}")
    try:
        for name in name_expressions:
            nvrtc.nvrtcAddNameExpression(prog, name.encode())
        opts = [f"--gpu-architecture=sm_{arch}", "--ptxas-options=-v", "-std=c++17", *options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), [o.encode() for o in opts])
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        log = log.rstrip(b"\0 ").decode()
        if err != ok:
            raise CompileError(f"{filename} (sm_{arch}): {err}\n{log}")
        lowered = {nvrtc.nvrtcGetLoweredName(prog, n.encode())[1].decode(): n for n in name_expressions}
        if not cubin:
            return log, lowered
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        binary = b" " * size
        nvrtc.nvrtcGetCUBIN(prog, binary)
        return log, binary, lowered
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


_ENTRY = re.compile(r"Compiling entry function '(\S+)' for 'sm_(\d+)'")
_PROPERTIES = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(log: str, names: dict[str, str], file="") -> list[Usage]:
    """One Usage per entry function in a `--ptxas-options=-v` log."""
    rows, entry, properties, frame = [], None, None, (0, 0, 0)
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            entry, arch, frame = m[1], int(m[2]), (0, 0, 0)
        elif m := _PROPERTIES.search(line):
            properties = m[1]
        elif (m := _FRAME.search(line)) and properties == entry:
            frame = tuple(map(int, m.groups()))
        elif (m := _USED.search(line)) and entry:
            smem = _SMEM.search(line)
            stack, stores, loads = frame
            rows.append(Usage(file, names.get(entry, entry), arch, int(m[1]), int(smem[1]) if smem else 0,
                              stores, loads, stack))
            entry = None
    return rows


def names_of(path: Path, code: str) -> list[str]:
    """The name expressions a .cu file is instantiated with: its launcher's for a file of gpu/cupy/, else those
    of its `// name_expressions:` lines."""
    product = Path(path).resolve().parent == tunables.FOLDER.resolve() and Path(path).name in PRODUCT_NAMES
    return list(PRODUCT_NAMES[Path(path).name]) if product else declared_names(code)


def check(path: Path, archs=ARCHS, defines=None) -> list[Usage]:
    """Compile the .cu file at `path` for each architecture, with `defines` (default: its tunables from
    gpu/cupy/tunables.py); its resource usage per kernel."""
    path = Path(path)
    code = path.read_text()
    names = names_of(path, code)
    flags = [f"-I{path.resolve().parent}", f"-I{tunables.FOLDER}",
             *tunables.options(tunables.defines_for(path) if defines is None else defines)]
    rows = []
    for arch in archs:
        log, lowered = compile_log(code, names, arch, flags, path.name)
        rows += parse_ptxas(log, lowered, path.name)
    return rows


def cu_files() -> list[Path]:
    """The .cu files of gpu/cupy/."""
    return sorted(tunables.FOLDER.glob("*.cu"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gpu.cupy.nvrtc",
        description="Compile CUDA C files with NVRTC for " + ", ".join(f"sm_{a}" for a in ARCHS) + " and print "
                    "registers, shared memory and spills per kernel; exit status 1 on a spill or a compile error.")
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE.cu",
                        help="CUDA C files (default: every .cu of gpu/cupy/)")
    args = parser.parse_args(argv)
    for path in args.files:
        if not path.is_file():
            parser.error(f"FILE.cu: no such file: {path}")
    return args


def main(argv: list[str]) -> int:
    files = parse_args(argv).files or cu_files()
    if problem := nvrtc_problem():
        print(f"gpu.cupy.nvrtc: {problem}", file=sys.stderr)
        return 2
    header = ("file", "kernel", "arch", "regs", "smem", "spill st", "spill ld", "stack")
    rows, failed = [], False
    for path in files:
        try:
            rows += check(path)
        except CompileError as e:
            print(e, file=sys.stderr)
            failed = True
    table = [header, *(tuple(map(str, astuple(r))) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:  # names left-aligned, numbers right-aligned
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print("  ".join(cells))
    spills = [r for r in rows if r.spill_stores or r.spill_loads]
    for r in spills:
        print(f"spill: {r.kernel} on sm_{r.arch} ({r.spill_stores} B stored, {r.spill_loads} B loaded)",
              file=sys.stderr)
    return int(failed or bool(spills))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
