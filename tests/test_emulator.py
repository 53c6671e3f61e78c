"""The CPU emulator of CUDA C (gpu/emu): correct kernels match NumPy in every thread order, and each
bug in tests/fixtures/kernels_broken.cu is caught (wrong numbers, a strict-mode error, or an ASan report).

`make test-asan` runs this file again with every kernel built with AddressSanitizer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpu import emu
from gpu.cupy import loader
from gpu.cupy.loader import declared_names

PROBLEM = emu.toolchain_problem()
pytestmark = [pytest.mark.emulated, pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))]

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "tests" / "fixtures" / "kernels_broken.cu"
ORDERS = ("forward", "reverse")
BLOCKS = (32, 64, 96, 128, 256, 512, 1000, 1024)

# Small kernels for the warp intrinsics, atomics, strict mode and argument checks.
LAB = r"""
// name_expressions: warp_ops, warp_sum, warp_scan, atomic_sum<float>, atomic_sum<double>, atomic_sum<int>
// name_expressions: atomic_sum<unsigned long long>, votes, arrival, handoff, indices, stale_shared
// name_expressions: partial_warp_shuffle, read_exited_lane, mask_without_caller, divergent_barrier
// name_expressions: deadlock, traps, store_ll, store_ull, store_int, store_float

extern "C" __global__ void warp_ops(const int* v, int* out, int width) {
  int i = blockIdx.x * blockDim.x + threadIdx.x, x = v[i], lane = threadIdx.x % 32;
  int* o = out + 6 * i;
  o[0] = __shfl_sync(0xffffffffu, x, (lane + 3) % width, width);
  o[1] = __shfl_up_sync(0xffffffffu, x, 3, width);
  o[2] = __shfl_down_sync(0xffffffffu, x, 5, width);
  o[3] = __shfl_xor_sync(0xffffffffu, x, 6 % width, width);
  o[4] = int(__ballot_sync(0xffffffffu, x & 1));
  o[5] = __any_sync(0xffffffffu, x == 7) | __all_sync(0xffffffffu, x >= 0) << 1;
}

// Sum of x: each warp reduces with shuffles, lane 0 adds the warp's sum to *out.
extern "C" __global__ void warp_sum(const float* x, float* out, long long n) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  float v = i < n ? x[i] : 0.0f;
  for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
  if (threadIdx.x % 32 == 0) atomicAdd(out, v);
}

// y = inclusive prefix sum of x within each warp.
extern "C" __global__ void warp_scan(const int* x, int* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x, v = x[i];
  for (int d = 1; d < 32; d *= 2) {
    int u = __shfl_up_sync(0xffffffffu, v, d);
    if (threadIdx.x % 32 >= d) v += u;
  }
  y[i] = v;
}

template <class T> __global__ void atomic_sum(const T* x, T* out, long long n) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) atomicAdd(out, x[i]);
}

extern "C" __global__ void votes(const int* p, int* out) {
  int v = p[threadIdx.x];
  int c = __syncthreads_count(v), a = __syncthreads_and(v), o = __syncthreads_or(v);
  if (threadIdx.x == 0) out[0] = c, out[1] = a, out[2] = o;
}

// order[t] = the position in which thread t arrived after the barrier.
extern "C" __global__ void arrival(int* order) {
  __shared__ int counter;
  if (threadIdx.x == 0) counter = 0;
  __syncthreads();
  order[blockIdx.x * blockDim.x + threadIdx.x] = atomicAdd(&counter, 1);
}

extern "C" __global__ void indices(unsigned* out) {
  unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  unsigned* o = out + 4 * (b * blockDim.x * blockDim.y * blockDim.z + t);
  o[0] = threadIdx.x | threadIdx.y << 10 | threadIdx.z << 20;
  o[1] = blockIdx.x | blockIdx.y << 10 | blockIdx.z << 20;
  o[2] = blockDim.x | blockDim.y << 10 | blockDim.z << 20;
  o[3] = gridDim.x | gridDim.y << 10 | gridDim.z << 20;
}

// Another thread rewrites s between two barriers: the compiler must not keep it in a register.
extern "C" __global__ void handoff(int* out) {
  __shared__ int s;
  if (threadIdx.x == 0) s = 1;
  __syncthreads();
  if (threadIdx.x == 1) s = s + 1;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = s;
}

// Block 0 writes its static shared array; every block reads it.
extern "C" __global__ void stale_shared(float* y) {
  __shared__ float s[64];
  if (blockIdx.x == 0) s[threadIdx.x] = 1.0f;
  __syncthreads();
  y[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

extern "C" __global__ void partial_warp_shuffle(float* y) {
  y[threadIdx.x] = __shfl_down_sync(0xffffffffu, float(threadIdx.x), 8);
}
extern "C" __global__ void read_exited_lane(float* y) {
  if (threadIdx.x == 5) return;
  y[threadIdx.x] = __shfl_sync(0xffffffffu, 1.0f, 5);
}
extern "C" __global__ void mask_without_caller(float* y) { y[threadIdx.x] = __ballot_sync(1u, 1); }
extern "C" __global__ void divergent_barrier(float* y) {
  if (threadIdx.x % 2) { y[threadIdx.x] = 1; __syncthreads(); }
  else { y[threadIdx.x] = 2; __syncthreads(); }
}
extern "C" __global__ void deadlock(float* y) {
  if (threadIdx.x == 0) __syncthreads();
  else __syncwarp();
  y[threadIdx.x] = 1;
}
extern "C" __global__ void traps(float* y) {
  assert(threadIdx.x != 3);
  y[threadIdx.x] = 1;
}

extern "C" __global__ void store_ll(long long v, long long* out) { *out = v; }
extern "C" __global__ void store_ull(unsigned long long v, unsigned long long* out) { *out = v; }
extern "C" __global__ void store_int(int v, int* out) { *out = v; }
extern "C" __global__ void store_float(float v, float* out) { *out = v; }
"""


@pytest.fixture(scope="module")
def broken():
    code = BROKEN.read_text()
    return emu.Module(code, declared_names(code), filename=BROKEN.name)


@pytest.fixture(scope="module")
def lab():
    return emu.Module(LAB, declared_names(LAB), filename="lab.cu")


# ------------------------------------------------------------------------------------------------
# The tiled correlation and its broken copies

def correlate(module, variant, n, k, block, dtype=np.float32, order="forward", seed=0):
    """(y, x, w) from running kernels_broken.cu's `variant` on random inputs; y starts as NaN."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(n).astype(dtype), rng.standard_normal(k).astype(dtype)
    y = np.full(n - k + 1, np.nan, dtype)
    kern = module.get_function(f"{variant}<{'float' if dtype == np.float32 else 'double'}>")
    kern(((n - k + block) // block,), (block,), (x, w, y, n, k),
         shared_mem=(block + k - 1) * x.itemsize, order=order)
    return y, x, w


def wrong(y, x, w) -> int:
    """How many outputs miss the float64 reference by more than 4 eps sqrt(k) sum|x w| (NaN counts)."""
    ref = np.correlate(x.astype(np.float64), w.astype(np.float64), "valid")
    mag = np.correlate(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), "valid")
    tol = 4 * np.finfo(y.dtype).eps * np.sqrt(len(w)) * mag + np.finfo(y.dtype).tiny
    return int(np.count_nonzero(~(np.abs(y - ref) <= tol)))


def sizes(count=48, seed=7):
    """(n, k, block): edge cases, then random n in 1..3000, k in 1..min(n, 33), block in 32..1024."""
    rng = np.random.default_rng(seed)
    cases = [(1, 1, 32), (2, 2, 32), (33, 33, 32), (64, 33, 64), (1000, 1, 1024), (1023, 17, 1000),
             (3000, 33, 32), (3000, 33, 1024)]
    while len(cases) < count:
        n = int(rng.integers(1, 3001))
        cases.append((n, int(rng.integers(1, min(n, 33) + 1)), int(rng.choice(BLOCKS))))
    return cases


@pytest.mark.parametrize("order", [*ORDERS, "random"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_matches_numpy(broken, dtype, order):
    bad = {}
    for n, k, block in sizes():
        if count := wrong(*correlate(broken, "corr_tiled", n, k, block, dtype, order, seed=n)):
            bad[(n, k, block)] = count
    assert not bad, f"(n, k, block): wrong outputs: {bad}"


def test_missing_sync_gives_wrong_numbers(broken):
    for n, k, block in [(100, 2, 32), (1000, 7, 128), (3000, 33, 1024)]:
        counts = {o: wrong(*correlate(broken, "corr_no_sync", n, k, block, order=o)) for o in ORDERS}
        assert max(counts.values()) > 0, f"n={n} k={k} block={block}: {counts}"


def test_missing_halo_gives_wrong_numbers(broken):
    for order in ORDERS:
        assert wrong(*correlate(broken, "corr_no_halo", 1000, 7, 128, order=order)) > 0


def test_early_return_before_barrier_is_an_error(broken):
    with pytest.raises(emu.EmulatorError, match=r"exited while \d+ thread\(s\) wait at __syncthreads at "
                                                r"kernels_broken\.cu:\d+"):
        correlate(broken, "corr_early_return", 1000, 7, 128)
    y, x, w = correlate(broken, "corr_early_return", 1030, 7, 128)  # every block full: no early return
    assert wrong(y, x, w) == 0


# Runs corr_tiled (a positive control), then `variant` with `halo` elements of shared memory per block.
ASAN_SCRIPT = """
import sys
import numpy as np
from gpu import emu
from gpu.cupy import loader
from gpu.cupy.loader import declared_names
code = open("tests/fixtures/kernels_broken.cu").read()
mod = emu.Module(code, declared_names(code), filename="kernels_broken.cu")
n, k, block = 3100, 33, 256  # the last tile ends 4 elements past the end of x
x, w = np.ones(n, np.float32), np.ones(k, np.float32)
for variant, halo in [("corr_tiled", k - 1), (sys.argv[1], int(sys.argv[2]))]:
    y = np.zeros(n - k + 1, np.float32)
    mod.get_function(variant + "<float>")(((n - k + block) // block,), (block,), (x, w, y, n, k),
                                          shared_mem=(block + halo) * 4)
    print(variant, "ran", flush=True)
"""


@pytest.mark.asan
@pytest.mark.parametrize("variant, halo, reports", [
    ("corr_oob_read", 32, ["heap-buffer-overflow", "READ of size 4", "right of 12400-byte region"]),
    ("corr_tiled", 0, ["use-after-poison", "WRITE of size 4"]),  # shared_mem too small for the halo
])
def test_out_of_bounds_access_is_caught_by_asan(variant, halo, reports):
    if emu.asan_runtime() is None:
        pytest.skip(f"{emu.compiler()} has no libasan.so")
    run = subprocess.run([sys.executable, "-c", ASAN_SCRIPT, variant, str(halo)], cwd=ROOT,
                         env=emu.asan_env(), capture_output=True, text=True, timeout=300)
    assert run.stdout == "corr_tiled ran\n", run.stderr[-3000:]
    for report in ["ERROR: AddressSanitizer", *reports]:
        assert report in run.stderr, run.stderr[-3000:]


# ------------------------------------------------------------------------------------------------
# Warp intrinsics, atomics, block-wide votes

@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("width", [32, 16, 8])
def test_warp_intrinsics(lab, width, order):
    """The CUDA documentation's semantics, lane by lane, for 4 warps in 2 blocks."""
    v = np.random.default_rng(width).integers(0, 100, 128).astype(np.int32)
    out = np.zeros((128, 6), np.int32)
    lab.get_function("warp_ops")((2,), (64,), (v, out, np.int32(width)), order=order)
    t = np.arange(128)
    pos = t % 32 % width  # position within the width-wide segment
    segment = t - pos
    per_warp = lambda a: np.repeat(a, 32)
    bits = (v.reshape(4, 32) & 1).astype(np.uint64) << np.arange(32, dtype=np.uint64)
    expect = {
        "shfl": v[segment + (t % 32 + 3) % width],
        "up": np.where(pos >= 3, v[t - 3], v),
        "down": np.where(pos + 5 < width, v[np.minimum(t + 5, 127)], v),
        "xor": v[t ^ (6 % width)],
        "ballot": per_warp(bits.sum(axis=1).astype(np.uint32).view(np.int32)),
        "any | all << 1": per_warp((v.reshape(4, 32) == 7).any(axis=1) | 2),
    }
    for col, (name, e) in enumerate(expect.items()):
        np.testing.assert_array_equal(out[:, col], e, err_msg=name)


@pytest.mark.parametrize("order", ORDERS)
def test_warp_reduction_and_scan(lab, order):
    n = 10_000
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    total = np.zeros(1, np.float32)
    lab.get_function("warp_sum")(((n + 255) // 256,), (256,), (x, total, n), order=order)
    assert abs(total[0] - x.astype(np.float64).sum()) <= 1e-5 * np.abs(x).sum()
    xi = np.random.default_rng(1).integers(-9, 10, 256).astype(np.int32)
    yi = np.empty_like(xi)
    lab.get_function("warp_scan")((2,), (128,), (xi, yi), order=order)
    np.testing.assert_array_equal(yi, np.cumsum(xi.reshape(-1, 32), axis=1).ravel())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint64])
def test_atomic_add_across_blocks(lab, dtype):
    n = 100_000  # 391 blocks over several OS threads: the atomics really race
    x, out = np.ones(n, dtype), np.zeros(1, dtype)
    name = {np.float32: "float", np.float64: "double", np.int32: "int",
            np.uint64: "unsigned long long"}[dtype]
    lab.get_function(f"atomic_sum<{name}>")(((n + 255) // 256,), (256,), (x, out, n))
    assert out[0] == n


def test_syncthreads_count_and_or(lab):
    out = np.zeros(3, np.int32)
    for p, expect in [(np.arange(64) % 3 == 0, [22, 0, 1]), (np.ones(64, bool), [64, 1, 1]),
                      (np.zeros(64, bool), [0, 0, 0])]:
        lab.get_function("votes")((1,), (64,), (p.astype(np.int32), out))
        assert out.tolist() == expect


# ------------------------------------------------------------------------------------------------
# The scheduler: thread order, built-in indices, shared memory poison

def test_thread_order(lab):
    def arrival(order, seed=0):
        got = np.zeros(96, np.int32)
        lab.get_function("arrival")((1,), (96,), (got,), order=order, seed=seed)
        return got

    t = np.arange(96)
    np.testing.assert_array_equal(arrival("forward"), t)
    np.testing.assert_array_equal(arrival("reverse"), t[::-1])
    shuffled = arrival("random", seed=1)
    assert sorted(shuffled) == t.tolist() and not (shuffled == t).all() and not (shuffled == t[::-1]).all()
    np.testing.assert_array_equal(arrival("random", seed=1), shuffled)
    assert not (arrival("random", seed=2) == shuffled).all()


@pytest.mark.parametrize("order", ORDERS)
def test_shared_memory_is_reread_after_a_barrier(lab, order):
    out = np.zeros(1, np.int32)
    lab.get_function("handoff")((1,), (64,), (out,), order=order)
    assert out[0] == 2


def test_builtin_indices_in_3d(lab):
    grid, block = (3, 2, 2), (4, 2, 3)
    out = np.zeros((2, 2, 3, 3, 2, 4, 4), np.uint32)  # grid z, y, x, block z, y, x, value
    lab.get_function("indices")(grid, block, (out,))
    bz, by, bx, tz, ty, tx = np.indices(out.shape[:6])
    pack = lambda x, y, z: x | y << 10 | z << 20
    np.testing.assert_array_equal(out[..., 0], pack(tx, ty, tz))
    np.testing.assert_array_equal(out[..., 1], pack(bx, by, bz))
    assert (out[..., 2] == pack(*block)).all() and (out[..., 3] == pack(*grid)).all()


def test_shared_memory_starts_as_nan_in_every_block(lab, monkeypatch):
    monkeypatch.setenv("KERNELS_EMU_THREADS", "1")  # all blocks on one OS thread, one after another
    y = np.zeros((4, 64), np.float32)
    lab.get_function("stale_shared")((4,), (64,), (y,))
    assert (y[0] == 1).all() and np.isnan(y[1:]).all()


# ------------------------------------------------------------------------------------------------
# Strict mode

@pytest.mark.parametrize("kernel, block, message", [
    ("partial_warp_shuffle", 48, r"__shfl_down_sync at lab\.cu:\d+ \(mask 0xffffffff\) reads lane 16, "
                                 r"which does not exist \(partial warp\)"),
    ("read_exited_lane", 32, r"reads lane 5, which has exited"),
    ("mask_without_caller", 32, r"mask 0x00000001 leaves out the calling lane 1"),
    ("divergent_barrier", 64, r"waits at __syncthreads at lab\.cu:(\d+) but .* waits at __syncthreads at "
                              r"lab\.cu:(?!\1)\d+"),
    ("deadlock", 64, r"deadlock in block \(0,0,0\): 1 thread\(s\) wait at __syncthreads .*"
                     r"31 thread\(s\) wait at __syncwarp .*32 thread\(s\) exited"),
    ("traps", 32, r"thread \(3,0,0\) of block \(0,0,0\): assertion 'threadIdx.x != 3' failed at lab\.cu:\d+"),
])
@pytest.mark.parametrize("order", ORDERS)
def test_strict_mode_errors(lab, kernel, block, message, order):
    y = np.zeros(block, np.float32)
    with pytest.raises(emu.EmulatorError, match=message):
        lab.get_function(kernel)((1,), (block,), (y,), order=order)


def test_lenient_mode_lets_divergent_barriers_meet(lab):
    y = np.zeros(64, np.float32)
    lab.get_function("divergent_barrier")((1,), (64,), (y,), strict=False)
    np.testing.assert_array_equal(y, np.tile([2, 1], 32))


# ------------------------------------------------------------------------------------------------
# Arguments and launch configuration

def test_signature_is_reflected(lab, broken):
    assert broken.get_function("corr_tiled<float>").signature == (
        "const float*", "const float*", "float*", "long long", "long long")
    assert lab.get_function("atomic_sum<unsigned long long>").signature == (
        "const unsigned long long*", "unsigned long long*", "long long")


def test_python_int_is_passed_as_int64(lab):
    out = np.zeros(1, np.int64)
    lab.get_function("store_ll")((1,), (1,), (2**40 + 3, out))
    assert out[0] == 2**40 + 3
    lab.get_function("store_ll")((1,), (1,), (-7, out))
    assert out[0] == -7
    out_u = np.zeros(1, np.uint64)
    lab.get_function("store_ull")((1,), (1,), (2**40 + 3, out_u))  # the same bits as int64
    assert out_u[0] == 2**40 + 3
    with pytest.raises(TypeError, match=r"argument 0 \(unsigned long long\): expected uint64, got a Python"):
        lab.get_function("store_ull")((1,), (1,), (-1, out_u))
    with pytest.raises(TypeError, match=r"argument 0 \(int\): expected int32, got a Python int, which "
                                        r"CuPy passes as int64"):
        lab.get_function("store_int")((1,), (1,), (5, np.zeros(1, np.int32)))
    with pytest.raises(TypeError, match=r"argument 0 \(float\): expected float32, got a Python float"):
        lab.get_function("store_float")((1,), (1,), (1.5, np.zeros(1, np.float32)))
    out32 = np.zeros(1, np.float32)
    lab.get_function("store_float")((1,), (1,), (np.float32(1.5), out32))
    assert out32[0] == 1.5


def test_wrong_dtype_names_the_argument(broken):
    x, w, y = np.ones(100), np.ones(3, np.float32), np.ones(98, np.float32)
    with pytest.raises(TypeError, match=r"argument 0 \(const float\*\): expected dtype float32, got float64"):
        broken.get_function("corr_tiled<float>")((1,), (128,), (x, w, y, 100, 3))


@pytest.mark.parametrize("args, error, message", [
    (lambda x, w, y: (x, w, y, 100), TypeError, r"takes 5 arguments"),
    (lambda x, w, y: (x, w, y, np.int32(100), 3), TypeError,
     r"argument 3 \(long long\): expected int64, got int32"),
    (lambda x, w, y: (x[::2], w, y, 50, 3), ValueError, r"argument 0 .* not C-contiguous"),
    (lambda x, w, y: (x, w, np.broadcast_to(y, y.shape), 100, 3), ValueError, r"argument 2 .* read-only"),
    (lambda x, w, y: (x.tolist(), w, y, 100, 3), TypeError, r"argument 0 .* expected a numpy array"),
])
def test_bad_arguments(broken, args, error, message):
    x, w, y = np.ones(100, np.float32), np.ones(3, np.float32), np.ones(98, np.float32)
    with pytest.raises(error, match=message):
        broken.get_function("corr_tiled<float>")((1,), (128,), args(x, w, y), shared_mem=520)


def test_launch_configuration_is_checked(broken):
    kern = broken.get_function("corr_tiled<float>")
    x, w, y = np.ones(100, np.float32), np.ones(3, np.float32), np.ones(98, np.float32)
    for grid, block, shared, message in [((1,), (2048,), 0, "at most 1024 threads"),
                                         ((0,), (32,), 0, "positive"),
                                         ((1,), (32, 32, 2), 0, "at most 1024"),
                                         ((1,), (32,), 64 << 10, "allows")]:
        with pytest.raises(ValueError, match=message):
            kern(grid, block, (x, w, y, 100, 3), shared_mem=shared)
    kern.max_dynamic_shared_size_bytes = 100 << 10
    kern((1,), (128,), (x, w, y, 100, 3), shared_mem=64 << 10)
    with pytest.raises(KeyError, match="not among the name expressions"):
        broken.get_function("corr_tiled<int>")


def test_compile_error_shows_the_source_line():
    with pytest.raises(emu.CompileError, match=r"bad\.cu:2:.*undeclared"):
        emu.Module("extern \"C\" __global__ void k(float* y) {\n  y[0] = undeclared;\n}\n", ["k"],
                   filename="bad.cu")


def test_build_is_cached():
    code = 'extern "C" __global__ void fill(float* y, float v) { y[threadIdx.x] = v; }'
    first = emu.build(code, ["fill"])
    built = first.stat().st_mtime_ns
    assert emu.build(code, ["fill"]) == first and first.stat().st_mtime_ns == built
    assert emu.build(code, ["fill"], ["-DVARIANT=1"]) != first


# ------------------------------------------------------------------------------------------------
# Settings named in their errors

FILL = 'extern "C" __global__ void fill(float* y, float v) { y[threadIdx.x] = v; }\n'


@pytest.mark.parametrize("cxx, error, message", [
    ("gcc", emu.CompileError, r"(?s)CXX=gcc failed on runtime\.cpp.*undefined reference.*C\+\+ runtime"),  # C only
    ("false", emu.CompileError, r"CXX=false failed on runtime\.cpp with exit status 1 and no message"),
    ("no-such-compiler", emu.CompileError, r"CXX=no-such-compiler: cannot run it"),
])
def test_a_bad_compiler_is_named(cxx, error, message, monkeypatch, tmp_path):
    if cxx == "gcc" and shutil.which("gcc") is None:
        pytest.skip("no gcc to stand for a C compiler")
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("KERNELS_EMU_CACHE", str(tmp_path))  # a fresh cache: the build runs
    with pytest.raises(error, match=message):
        emu.Module(FILL, ["fill"], filename="fill.cu")
    assert emu.toolchain_problem() == (None if shutil.which(cxx) else f"CXX={cxx} not found")


def test_an_unwritable_cache_is_named(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("KERNELS_EMU_CACHE", str(blocker / "cache"))
    with pytest.raises(emu.EmulatorError, match=rf"KERNELS_EMU_CACHE={blocker / 'cache'}: cannot write builds"):
        emu.Module(FILL, ["fill"], filename="fill.cu")


@pytest.mark.parametrize("name, value", [("KERNELS_EMU_THREADS", "abc"), ("KERNELS_EMU_THREADS", "0"),
                                         ("KERNELS_EMU_SEED", "x1"), ("KERNELS_EMU_ORDER", "sideways")])
def test_a_bad_launch_setting_is_named_before_the_launch(name, value, monkeypatch):
    kern = emu.Module(FILL, ["fill"], filename="fill.cu").get_function("fill")
    y = np.zeros(32, np.float32)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rf"{name}: expected .*{value!r}"):
        kern((1,), (32,), (y, np.float32(1)))
    assert (y == 0).all()


def test_a_source_without_name_expressions_is_named():
    with pytest.raises(ValueError, match=r"fill\.cu: no name expressions.*// name_expressions:"):
        emu.Module(FILL, [], filename="fill.cu")
    with pytest.raises(ValueError, match=r"<source>: no kernels to instantiate.*// name_expressions:"):
        loader.load(FILL)


# ------------------------------------------------------------------------------------------------
# gpu.cupy.loader, the loader the CuPy backend uses

def test_declared_names_split_at_top_level_commas():
    code = "// name_expressions: a<float, 4>, b<c<d, e>, f>\n//name_expressions:g\nint x; // h\n"
    assert declared_names(code) == ["a<float, 4>", "b<c<d, e>, f>", "g"]


def test_load_without_a_gpu_gives_the_emulator():
    kind, reason = loader.mode()
    if kind != "emulated":
        pytest.skip(f"kernels run as {kind!r} here ({reason})")
    mod = loader.load(BROKEN)
    assert isinstance(mod, emu.Module) and mod.name_expressions == tuple(declared_names(BROKEN.read_text()))
    n, k, block = 500, 9, 64
    x, w, y = np.ones(n, np.float32), np.ones(k, np.float32), np.zeros(n - k + 1, np.float32)
    mod.get_function("corr_tiled<float>")(((n - k + block) // block,), (block,), (x, w, y, n, k),
                                          shared_mem=(block + k - 1) * 4)  # a cupy.RawKernel call
    assert (y == k).all()


# ------------------------------------------------------------------------------------------------
# The build cache is verified before a build is loaded; every build links the runtime

NO_BUILTIN = 'extern "C" __global__ void serial(float* y, long long n) { for (long long i = 0; i < n; ++i) y[i] = i; }'


@pytest.mark.parametrize("damage", ["truncated", *[pytest.param(d, marks=pytest.mark.exhaustive)
                                                    for d in ("empty", "garbage")]])
def test_a_damaged_cached_build_is_built_again(damage, monkeypatch, tmp_path):
    """A build cut short, emptied or overwritten is rebuilt, never loaded (a truncated library is a SIGBUS)."""
    monkeypatch.setenv("KERNELS_EMU_CACHE", str(tmp_path))
    built = emu.build(FILL, ["fill"], filename="fill.cu")
    good = built.read_bytes()
    damaged = {"truncated": good[: len(good) // 3], "empty": b"", "garbage": b"\x7fELF" + b"\0" * 64}[damage]
    built.write_bytes(damaged)
    code = ("import sys, numpy as np; from gpu import emu; "
            "k = emu.Module(sys.argv[1], ['fill'], filename='fill.cu').get_function('fill'); "
            "y = np.zeros(32, np.float32); k((1,), (32,), (y, np.float32(2))); print(y.sum())")
    env = {k: v for k, v in os.environ.items() if k not in ("KERNELS_EMU_ASAN", "LD_PRELOAD")}  # the build above
    child = subprocess.run([sys.executable, "-c", code, FILL], capture_output=True, text=True, timeout=300,
                           env={**env, "KERNELS_EMU_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert child.returncode == 0 and child.stdout.strip() == "64.0", (child.returncode, child.stderr[-2000:])
    assert built.read_bytes() == good or len(built.read_bytes()) > len(damaged), "the build was redone"


def test_a_build_without_its_record_is_built_again(monkeypatch, tmp_path):
    monkeypatch.setenv("KERNELS_EMU_CACHE", str(tmp_path))
    built = emu.build(FILL, ["fill"], filename="fill.cu")
    record = built.with_name(built.name + ".sha256")
    assert record.read_text().split()[0] == str(built.stat().st_size)
    record.unlink()
    before = built.stat().st_mtime_ns
    assert emu.build(FILL, ["fill"], filename="fill.cu") == built
    assert record.exists() and built.stat().st_mtime_ns != before


def test_a_kernel_that_names_no_builtin_links_the_runtime(monkeypatch, tmp_path):
    """One thread looping over everything references nothing of the runtime; the launcher must still be there."""
    monkeypatch.setenv("KERNELS_EMU_CACHE", str(tmp_path))  # a fresh cache: the build runs
    kern = emu.Module(NO_BUILTIN, ["serial"], filename="serial.cu").get_function("serial")
    y = np.zeros(10, np.float32)
    kern((1,), (1,), (y, np.int64(10)))
    np.testing.assert_array_equal(y, np.arange(10, dtype=np.float32))
