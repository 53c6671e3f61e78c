// CUDA C kernels of the `cupy` backend (gpu/cupy/backend.py): every 1-D op of the playground.
// Run by CuPy (cupy.RawModule) on a GPU and, unmodified, by the CPU emulator (gpu/emu) elsewhere.
//
// Variants (registered under these names, never renumbered; the ops they serve: gpu/steps.py):
//
//   naive   correlate_naive, weight_grad_naive, sum_columns as a one-thread total: one thread per
//           output, every operand from global memory (k loads per output, reuse only through the cache)
//   tiled   correlate_tiled: the block's tile of outputs plus its halo and CORR_TAPS filter taps are
//           staged in shared memory once, and each thread keeps CORR_PER_THREAD outputs in registers:
//           global loads fall from k per output to ~1 per (output, tap chunk), the inner loop runs from
//           shared memory (broadcast filter reads, consecutive signal words: no bank conflicts).
//           weight_grad_tiled / block_sums: the long sum over j is split across blocks (a grid that
//           fills the GPU instead of k or 1 threads), g and x chunks staged in shared memory; block
//           partials are added by sum_columns in a fixed order (deterministic).
//   atomic  as tiled, but blocks atomicAdd their partials into the zeroed output: one pass and no
//           workspace, NOT deterministic (the order of the additions varies)
//
// One correlation engine covers every sliding dot product (the op mapping: gpu/steps.py):
//
//   out[o] = epilogue(sum_{i<L} f'[i] s[o+i] + bias)        for o < M
//   f'[i]  = f[L-1-i] if flip else f[i]
//   s[t]   = sig[t + offset] (0 outside sig, and such terms are skipped)  or  sig[(t+offset) mod N]
//   epilogue: EPI_NONE v, EPI_RELU max(0, v) (NaN stays NaN), EPI_GATE gate[o] if v > 0 else 0
//
// and two sums: the weight gradient dw[i] = sum_j g[j] x[j+i] (stored reversed when flip) and the
// total out[0] = sum_j a[j].
//
// Every index is a long long; every kernel strides over the work beyond its grid. The block size is
// the launch's blockDim.x (a power of two in [32, 1024]). The tunables (CORR_*, WG_*, EPI_*) come with -D
// from gpu/cupy/tunables.py (which also sizes the dynamic shared memory); they have no defaults here.
//
// The kernels and instantiations each step launches are listed by its launcher, gpu/cupy/correlate.py.

#include "common.cuh"

#if !defined(CORR_PER_THREAD) || !defined(CORR_TAPS) || !defined(WG_TJ) || !defined(WG_WI) || \
    !defined(WG_PER_THREAD) || !defined(WG_TI)
#error "correlate.cu needs its tunables as -D options: gpu/cupy/tunables.py (DEFINES) lists them"
#endif

// One thread per output o (grid-stride); operands straight from global memory.
template <class T>
__global__ void correlate_naive(const T* __restrict__ sig, long long N, long long offset, int periodic,
                                const T* __restrict__ f, long long L, int flip, T* __restrict__ out,
                                long long M, T bias, int epilogue, const T* __restrict__ gate) {
  long long stride = (long long)gridDim.x * blockDim.x;
  for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < M; o += stride) {
    T acc = T(0);
    if (periodic) {
      long long p = wrap(o + offset, N);
      for (long long i = 0; i < L; ++i) {
        acc += (flip ? f[L - 1 - i] : f[i]) * sig[p];
        p = p + 1 < N ? p + 1 : 0;
      }
    } else {
      long long lo = max(0LL, -offset - o), hi = min(L, N - offset - o);
      for (long long i = lo; i < hi; ++i) acc += (flip ? f[L - 1 - i] : f[i]) * sig[o + i + offset];
    }
    out[o] = finish(acc + bias, o, epilogue, gate);
  }
}

// Block tile of TILE = B * CORR_PER_THREAD outputs (thread t owns o0 + t + rB); the filter in chunks
// of CORR_TAPS taps, each staged with its signal window in shared memory:
//   fs[c] = f'[c0+c],  ss[q] = s[o0+c0+q] (q < TILE + CORR_TAPS - 1: the tile plus the halo)
//   acc[r] += fs[c] * ss[t + rB + c]
// Loads coalesce; in the inner loop a warp reads fs[c] as a broadcast and ss at consecutive words.
template <class T>
__global__ void __launch_bounds__(1024)
correlate_tiled(const T* __restrict__ sig, long long N, long long offset, int periodic,
                const T* __restrict__ f, long long L, int flip, T* __restrict__ out, long long M,
                T bias, int epilogue, const T* __restrict__ gate) {
  const long long B = blockDim.x, TILE = B * CORR_PER_THREAD, WIN = TILE + CORR_TAPS - 1;
  T* fs = dynamic_shared<T>();
  T* ss = fs + CORR_TAPS;
  const long long t = threadIdx.x;
  const long long lo = -offset, hi = N - offset;  // non-periodic: s[q] is sig data for lo <= q < hi
  const long long tiles = (M + TILE - 1) / TILE;
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const long long o0 = tile * TILE;
    T acc[CORR_PER_THREAD];
#pragma unroll
    for (int r = 0; r < CORR_PER_THREAD; ++r) acc[r] = T(0);
    for (long long c0 = 0; c0 < L; c0 += CORR_TAPS) {
      __syncthreads();  // everyone is done reading the previous chunk
      for (long long c = t; c < CORR_TAPS; c += B) {
        long long i = c0 + c;
        fs[c] = i >= L ? T(0) : (flip ? f[L - 1 - i] : f[i]);
      }
      for (long long q = t; q < WIN; q += B) {
        long long pos = o0 + c0 + q;
        if (periodic) ss[q] = sig[wrap(pos + offset, N)];
        else ss[q] = (pos >= lo && pos < hi) ? sig[pos + offset] : T(0);
      }
      __syncthreads();
      const long long count = min((long long)CORR_TAPS, L - c0);
      const long long last = min(o0 + TILE, M) - 1 + c0 + count - 1;  // furthest signal position used
      if (periodic || (o0 + c0 >= lo && last < hi)) {
        for (long long c = 0; c < count; ++c) {  // interior chunk: every term is a real one
          const T wc = fs[c];
#pragma unroll
          for (int r = 0; r < CORR_PER_THREAD; ++r) acc[r] += wc * ss[t + r * B + c];
        }
      } else {
#pragma unroll
        for (int r = 0; r < CORR_PER_THREAD; ++r) {  // chunk touching the padding: real taps only
          const long long o = o0 + t + r * B;
          const long long cend = min(count, hi - o - c0);
          for (long long c = max(0LL, lo - o - c0); c < cend; ++c) acc[r] += fs[c] * ss[t + r * B + c];
        }
      }
    }
#pragma unroll
    for (int r = 0; r < CORR_PER_THREAD; ++r) {
      const long long o = o0 + t + r * B;
      if (o < M) out[o] = finish(acc[r] + bias, o, epilogue, gate);
    }
  }
}

// One thread per tap i (grid-stride): dw[i] = sum_j g[j] x[j+i], stored at k-1-i when flip.
template <class T>
__global__ void weight_grad_naive(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ dw,
                                  long long k, long long m, int flip) {
  long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < k; i += stride) {
    T acc = T(0);
    for (long long j = 0; j < m; ++j) acc += g[j] * x[j + i];
    dw[flip ? k - 1 - i : i] = acc;
  }
}

// Block (tile, split) of a grid (tiles, splits): taps i0 .. i0+WG_TI-1, and j over the chunks split,
// split+splits, ... of WG_TJ values:
//   gs[q] = g[j0+q], xs[q] = x[j0+i0+q]               (staged per chunk, coalesced)
//   acc[r] += gs[jj] * xs[jj + lane + 32r]            for tap i0+lane+32r, jj = w, w+W, ... (W warps)
// The W warps' sums are then added in warp order through shared memory and stored at
// partial[split * k + i] (i reversed when flip), or atomically added to partial[i] when atomic.
template <class T>
__global__ void __launch_bounds__(1024)
weight_grad_tiled(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ partial,
                  long long n, long long m, long long k, int flip, int atomic) {
  const long long B = blockDim.x, W = B / WG_WI, XW = WG_TJ + WG_TI - 1;
  T* gs = dynamic_shared<T>();
  T* xs = gs + WG_TJ;
  T* red = xs + XW;  // [W][WG_TI]
  const long long t = threadIdx.x, lane = t % WG_WI, w = t / WG_WI;
  const long long split = blockIdx.y, splits = gridDim.y;
  const long long tiles = (k + WG_TI - 1) / WG_TI, chunks = (m + WG_TJ - 1) / WG_TJ;
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const long long i0 = tile * WG_TI;
    T acc[WG_PER_THREAD];
#pragma unroll
    for (int r = 0; r < WG_PER_THREAD; ++r) acc[r] = T(0);
    for (long long chunk = split; chunk < chunks; chunk += splits) {
      const long long j0 = chunk * WG_TJ;
      __syncthreads();  // everyone is done reading the previous chunk
      for (long long q = t; q < WG_TJ; q += B) gs[q] = j0 + q < m ? g[j0 + q] : T(0);
      for (long long q = t; q < XW; q += B) xs[q] = j0 + i0 + q < n ? x[j0 + i0 + q] : T(0);
      __syncthreads();
      const long long jend = min((long long)WG_TJ, m - j0);
      for (long long jj = w; jj < jend; jj += W) {
        const T gj = gs[jj];
#pragma unroll
        for (int r = 0; r < WG_PER_THREAD; ++r) acc[r] += gj * xs[jj + lane + WG_WI * r];
      }
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < WG_PER_THREAD; ++r) red[w * WG_TI + lane + WG_WI * r] = acc[r];
    __syncthreads();
    for (long long q = t; q < WG_TI; q += B) {
      const long long i = i0 + q;
      if (i < k) {
        T v = red[q];
        for (long long ww = 1; ww < W; ++ww) v += red[ww * WG_TI + q];
        const long long col = flip ? k - 1 - i : i;
        if (atomic) atomicAdd(partial + col, v);
        else partial[split * k + col] = v;
      }
    }
  }
}

// partial[blockIdx.x] = sum of a[j] over the grid-stride j of this block: each thread adds its
// elements in order, then a tree in shared memory (blockDim.x elements, a power of two) adds the
// thread sums. With atomic, added into partial[0] instead.
template <class T>
__global__ void __launch_bounds__(1024)
block_sums(const T* __restrict__ a, long long n, T* __restrict__ partial, int atomic) {
  T* buf = dynamic_shared<T>();
  const long long t = threadIdx.x, stride = (long long)gridDim.x * blockDim.x;
  T acc = T(0);
  for (long long j = (long long)blockIdx.x * blockDim.x + t; j < n; j += stride) acc += a[j];
  buf[t] = acc;
  for (long long s = blockDim.x / 2; s > 0; s /= 2) {
    __syncthreads();
    if (t < s) buf[t] += buf[t + s];
  }
  if (t == 0) {
    if (atomic) atomicAdd(partial, buf[0]);
    else partial[blockIdx.x] = buf[0];
  }
}

// One thread per column i < cols (grid-stride): out[i] = sum_{b<rows} partial[b * ld + i], in order of b
// (ld >= cols: the row pitch, so that a block of columns of a wider workspace can be summed).
template <class T>
__global__ void sum_columns(const T* __restrict__ partial, long long rows, long long cols, long long ld,
                            T* __restrict__ out) {
  long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += stride) {
    T acc = T(0);
    for (long long b = 0; b < rows; ++b) acc += partial[b * ld + i];
    out[i] = acc;
  }
}

// a[i] = value for every i < n (grid-stride).
template <class T>
__global__ void fill(T* __restrict__ a, long long n, T value) {
  long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) a[i] = value;
}
