"""Real compilation with no GPU: every numba.cuda kernel through numba-cuda's compiler and ptxas, every
CUDA C kernel through NVRTC; no spill, and registers x threads and shared memory within what a block may
use on sm_80 and sm_90. `make test` compiles every numba kernel at its default launch for sm_90 in float32; the
float64 builds, sm_80 and the sweep over every launch the backends accept (minutes with a cold cache) are marked
`exhaustive` (make test-all).

The numba kernels compile in child processes with the simulator off (plots.model.resources), the default
launches in groups (default_groups) that pytest-xdist runs side by side, cached in $KERNELS_COMPILE_CACHE.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

import kernels
from gpu.cupy import nvrtc
from plots.model import child, resources

ROOT = Path(__file__).resolve().parent.parent

PROBLEM = resources.toolchain_problem()
needs_toolchain = pytest.mark.skipif(PROBLEM is not None, reason=f"real compile: {PROBLEM}")
needs_nvrtc = pytest.mark.skipif(nvrtc.nvrtc_problem() is not None, reason=str(nvrtc.nvrtc_problem()))


@pytest.fixture(scope="module")
def numba_rows():
    return resources.run()


#: The default-launch compile of each dtype is split into tests (each its own child process) that pytest-xdist runs
#: side by side: a kernel whose weight-gradient window is written out at more than WRITTEN_OUT taps per thread
#: (gpu.numba_cuda.ladder.window_source: ~20 s, most of it numba's lowering of the 32 rows) alone, the rest in PARTS
#: (about 1 s a kernel).
PARTS = 3
WRITTEN_OUT = 16


def default_kernels(dtypes=resources.DTYPES) -> list:
    """The declared numba.cuda kernels (gpu.steps.Kernel) of `dtypes` that a step launches by default."""
    return [k for k in resources.declared_kernels("numba_cuda", dtypes) if k.default]


def default_groups(dtype) -> list:
    """The default kernels of `dtype` in groups of about equal compile time: [[Kernel, ...], ...]."""
    def taps(k):
        found = re.search(r"TP=(\d+)", k.name)
        return int(found.group(1)) if found else 0

    kernels_ = default_kernels((dtype,))
    alone = [[k] for k in kernels_ if taps(k) > WRITTEN_OUT]
    rest = [k for k in kernels_ if taps(k) <= WRITTEN_OUT]
    return alone + [rest[i::PARTS] for i in range(PARTS)]


def test_every_jit_kernel_has_a_default_launch_in_both_dtypes():
    defaults = {(k.name.split("[")[0], k.dtype) for k in default_kernels()}
    missing = {(name, dtype) for name in defined_kernels() for dtype in resources.DTYPES} - defaults
    assert not missing, f"no default launch: {sorted(missing)}"


@needs_toolchain
@pytest.mark.parametrize("arch, dtype, group", [
    pytest.param(a, d, i, marks=[] if (a, d) == (max(resources.ARCHS), "float32") else pytest.mark.exhaustive)
    for a in resources.ARCHS for d in resources.DTYPES for i in range(len(default_groups(d)))])
def test_every_numba_kernel_compiles_at_its_default_launch(arch, dtype, group):
    """Every @cuda.jit kernel of the backend, in `dtype`, at the launch its backend runs by default (one group
    of default_groups(dtype) per test): no spill, registers x threads within the register file. `make test`
    compiles float32 for sm_90 (the H100 and H200); float64 and the older architectures are exhaustive."""
    wanted = default_groups(dtype)[group]
    # resources.run_named's child and cache, for a whole group at once
    names = [[k.name, k.dtype] for k in wanted]
    compiled = child.run_json("plots.model.resources", ["--kernels", json.dumps(names), "--arch", arch],
                              simulator=False, name="numba-default", key=(names, arch, resources.find_tool("ptxas")),
                              what="real compile")
    assert set(compiled) == {f"{name}:{dtype}" for name, dtype in names}
    rows = [{"kernel": k.name, "dtype": k.dtype, "arch": arch, "blocks": k.blocks, "dynamic_shared": dict(k.shared),
             **compiled[f"{k.name}:{k.dtype}"]} for k in wanted]
    bad = resources.failures(rows)
    assert not bad, "\n".join(bad)


def test_the_default_groups_hold_every_default_kernel_once():
    grouped = [(k.name, k.dtype) for d in resources.DTYPES for group in default_groups(d) for k in group]
    assert sorted(grouped) == sorted((k.name, k.dtype) for k in default_kernels())
    assert len(default_groups("float32")) > PARTS and {k.dtype for k in default_kernels()} == set(resources.DTYPES)


@needs_toolchain
@pytest.mark.exhaustive
def test_every_numba_kernel_compiles_without_spills_and_fits_the_register_file(numba_rows):
    assert {r["arch"] for r in numba_rows} == set(resources.ARCHS)
    print(resources.table([r for r in numba_rows if r["arch"] == 90 and (r["registers"] > 64 or r["stack"])]))
    bad = resources.failures(numba_rows)
    assert not bad, "\n".join(bad)


@needs_toolchain
def jit_kernels(text: str) -> set:
    """Names of the @cuda.jit kernels (not device functions) of a module's source: top-level ones by their
    name, those inside a kernel factory by the factory's name when called `kernel`, else by their own."""
    def is_kernel(fn):
        return any(ast.unparse(d).startswith("cuda.jit") and "device=True" not in ast.unparse(d)
                   for d in fn.decorator_list)

    names = set()
    for top in ast.parse(text).body:
        if isinstance(top, ast.FunctionDef):
            names |= {top.name} if is_kernel(top) else set()
            names |= {top.name if fn.name == "kernel" else fn.name for fn in ast.walk(top)
                      if fn is not top and isinstance(fn, ast.FunctionDef) and is_kernel(fn)}
    return names


def test_jit_kernels_finds_every_kernel_of_every_factory():
    text = """
@cuda.jit
def plain(a): pass

@cuda.jit(device=True)
def helper(a): pass

def first(b):
    @cuda.jit
    def kernel(a): pass
    return kernel

def second(b):
    @cuda.jit
    def kernel(a): pass

    @cuda.jit
    def finish_kernel(a): pass
    return kernel, finish_kernel
"""
    assert jit_kernels(text) == {"plain", "first", "second", "finish_kernel"}


def defined_kernels() -> set:
    """'module.kernel' of every @cuda.jit kernel (not device function) defined in gpu/numba_cuda/*.py."""
    defined = set()
    for path in sorted((ROOT / "gpu" / "numba_cuda").glob("*.py")):
        defined |= {f"{path.stem}.{name}" for name in jit_kernels(path.read_text())}
    return defined


@pytest.mark.exhaustive
def test_every_jit_kernel_of_the_backend_is_compiled(numba_rows):
    """Each @cuda.jit kernel (not device function) defined in gpu/numba_cuda/*.py is in the compile set,
    for both dtypes and, for the kernel factories, every block size they accept."""
    defined = defined_kernels()
    compiled = {}
    for r in numba_rows:
        compiled.setdefault(r["kernel"].split("[")[0], set()).update((r["dtype"], b) for b in r["blocks"])
    assert defined <= set(compiled), f"not compiled: {sorted(defined - set(compiled))}"
    for name in defined:
        assert {d for d, _ in compiled[name]} == {"float32", "float64"}, name
        assert {b for _, b in compiled[name]} >= {32, 128, 256}, name


@needs_nvrtc
@pytest.mark.exhaustive
def test_every_cuda_c_kernel_fits_at_every_block_size():
    rows = resources.cuda_c_rows()
    assert {r["arch"] for r in rows} == set(resources.ARCHS) and len(rows) > 20
    bad = resources.failures(rows)
    assert not bad, "\n".join(bad)


def test_failures_reports_spills_register_overflow_and_shared_memory():
    row = {"kernel": "k", "dtype": "float32", "arch": 90, "registers": 72, "shared": 0, "stack": 0,
           "spill_stores": 0, "spill_loads": 0, "blocks": (512, 1024)}
    assert resources.failures([row]) == [
        "k float32 sm_90: 72 registers x 1024 threads = 73728 > 65536: cannot launch at block=1024"]
    assert "spills (4 B stored" in resources.failures([{**row, "registers": 8, "spill_stores": 4}])[0]
    big = {**row, "registers": 8, "shared": 1024, "dynamic_shared": {512: 48 << 10, 1024: 0}}
    (line,) = resources.failures([big])
    assert "block=512" in line and "shared memory" in line


def test_ptxas_log_is_parsed():
    log = ("ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
           "ptxas info    : Function properties for k\n"
           "    24 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 40 registers, 1024 bytes smem, 380 bytes cmem[0]\n")
    assert resources.parse_ptxas(log) == {"registers": 40, "shared": 1024, "stack": 24, "spill_stores": 8,
                                              "spill_loads": 12}


def test_device_stand_in_answers_compute_capability():
    stand_in = resources.DeviceStandIn((8, 0))
    assert stand_in.compute_capability == (8, 0) and "stand-in" in stand_in.name


# --- the narrowed launch options (what the checks above let the kernels launch with) ---------------------------

@pytest.mark.parametrize("options, words", [
    ({"per_thread": 3}, ["per_thread", "(1, 2, 4, 8)", "3"]),
    ({"per_thread": 16}, ["per_thread", "16"]),
])
def test_per_thread_outside_the_compiled_set_is_rejected(options, words):
    if not kernels.status("numba_cuda").usable:
        pytest.skip(f"numba_cuda: {kernels.status('numba_cuda').reason}")
    with pytest.raises(ValueError) as info:
        kernels.get("conv1d", "numba_cuda", "tiled", **options)(np.ones(10), np.ones(3))
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("op, variant, block, per_thread", [
    ("conv1d", "tiled", 1024, 4), ("conv1d_weight_grad", "tiled", 1024, 4), ("conv1d_weight_grad", "atomic", 1024, 4),
    ("conv1d_weight_grad", "tiled", 512, 8), ("conv1d_relu_backward", "tiled", 1024, 4),
    ("conv1d_layer", "direct", 1024, 4), ("conv1d_layer", "tiled", 512, 4),
    ("conv1d_layer_backward", "direct", 1024, 4), ("conv1d_layer_backward", "tiled", 512, 4)])
def test_blocks_beyond_the_register_file_are_rejected_with_a_clear_error(op, variant, block, per_thread):
    if not kernels.status("numba_cuda").usable:
        pytest.skip(f"numba_cuda: {kernels.status('numba_cuda').reason}")
    from kernels.spec import OPS

    rng = np.random.default_rng()
    sizes = {"N": 1, "C_in": 1, "C_out": 2, "L": 40, "K": 3} if "layer" in op else {"n": 40, "k": 3}
    args, kwargs = OPS[op].make_args(rng, np.float32, **sizes)
    with pytest.raises(ValueError, match=f"block: .*at most .*got {block}"):
        kernels.get(op, "numba_cuda", variant, block=block, per_thread=per_thread)(*args, **kwargs)


def test_the_naive_variant_still_takes_block_1024(rng):
    if not kernels.status("numba_cuda").usable:
        pytest.skip(f"numba_cuda: {kernels.status('numba_cuda').reason}")
    from kernels import compare
    from kernels.spec import OPS

    args, kwargs = OPS["conv1d"].make_args(rng, np.float32, n=40, k=3)
    compare.assert_close("conv1d", kernels.get("conv1d", "numba_cuda", "naive", block=1024)(*args, **kwargs),
                         args, kwargs)
