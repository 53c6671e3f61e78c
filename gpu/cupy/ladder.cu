// The kernel ladder of the 1-D correlation engine and weight gradient, steps beyond gpu/cupy/correlate.cu's
// `naive` and `tiled`; launched by gpu/cupy/ladder.py. Same engine contract as gpu/cupy/correlate.cu:
//
//   out[o] = epilogue(sum_{i<L} f'[i] s[o+i] + bias)        for o < M,  f'[i] = f[L-1-i] if flip else f[i]
//   s[t]   = sig[t + offset] (0 outside sig, such terms skipped)  or  sig[(t + offset) mod N] (periodic)
//   dw[i]  = sum_{j<m} g[j] x[j+i]  for i < k (stored at k-1-i when flip), n = m + k - 1
//
// Forward (correlation engine; every op of gpu/steps.py, input gradient included: offset -(k-1)):
//   naive    (correlate.cu) one thread per output, operands from global memory
//   tiled    (correlate.cu) block tile + fixed 256-tap halo in shared memory, outputs strided by blockDim
//   regwin   R contiguous outputs per thread and a register sliding window over the staged x: each x
//            loaded from shared memory serves R outputs (tiled: 1); the halo is k-1 (tiled: 255 for any k);
//            one padding word per R in shared memory, so that reads at a stride of R words hit distinct
//            banks
//   vec      regwin with 16-byte loads (float4 / double2): x staged from global memory with vector loads
//            when the window is aligned and inside sig (scalar otherwise), shared reads of x and f as
//            vectors (R/4 or R/2 instructions instead of R), vector stores of full output groups;
//            the padding is one vector per run of R (none where R is a single vector)
//   vec16    vec with R = 16 outputs per thread (correlate_vec<T, 16, MAXB>): each x and filter value read
//            from shared memory serves 16 FMAs instead of 8, so the shared loads and the window's shifts per
//            FMA halve
// Weight gradient:
//   naive, tiled (correlate.cu) one thread per tap; 128-tap tiles whatever k (98% wasted at k = 3)
//   wg_regwin  tap tiles sized to k (G groups of TP contiguous taps, G*TP >= k, TP = 4 for k <= 16
//            else 16), each thread a contiguous slice of JS values of j with a register sliding window
//            over x; per-thread partials, __shfl_down_sync tree, warps added in order into a workspace
//            of per-block partials, then wg_sum_partials adds each column in a fixed order: the same
//            bits on every run. 2-D grid (tap tiles x j splits) for large k.
//   wg_stream  wg_regwin with STAGE_LOADS = 4 loads of 16 bytes (float4 / double2) in flight per thread
//            while staging (wg_regwin: 2 scalar loads, 8 or 16 bytes), all issued before the first shared
//            store, so a chunk waits for a few round trips to DRAM instead of ~30; slices of up to 512
//            bytes of j per thread where the shared memory allows (more FMAs per chunk against its fixed
//            code: syncs, checks, tail); TP = 32 taps per thread in float32 for k > 64 at blocks up to 256
//            (twice the FMAs per staged value and per chunk); and ~16 times more blocks (j splits), so the
//            last wave's tail is a small part of the run
//
// Each step's predicted share of the HBM bandwidth or of the FMA peak, and what bounds it, is in the targets
// table the static model writes (python -m plots.model; plots/<device>-model/targets.md).
//
// Every global index is a long long; shared-memory indices are int (shared memory < 228 KB). Kernels
// stride over tiles beyond their grid. MAXB, the last template argument, is the __launch_bounds__ and
// the largest block the launcher accepts for that instantiation (gpu/cupy/ladder.py FORWARD_BOUNDS,
// WG_BOUNDS): 1024, except where the registers demand less (double R = 8: 512; TP = 16: float 512,
// double 256) or the shared memory (vec double R = 4: 512, its padding makes 1024 threads need 50 KB;
// double TP = 4: 512, as JS >= TP at 1024 threads needs 82 KB); vec float takes R = 4 at 1024. The
// block size is a power of two in [32, MAXB]; the launcher computes the dynamic shared memory (at most
// 48 KB) from the layouts described below.
//
// The instantiations are listed by the launcher (gpu/cupy/ladder.py NAMES), with the launch bounds.

#include "common.cuh"

#ifndef LADDER_TAPS
#error "ladder.cu needs LADDER_TAPS as a -D option: gpu/cupy/tunables.py (DEFINES) lists it"
#endif
#ifndef STAGE_LOADS
#error "ladder.cu needs STAGE_LOADS as a -D option: gpu/cupy/tunables.py (DEFINES) lists it"
#endif

// Shared-memory skew: element q lives at slot q + pad * (q >> shift), a padding of `pad` elements after
// every run of 2^shift. A warp whose lanes read element lane * 2^shift + d (any d) then reads words at
// an odd stride (2^shift + pad, in units of the access) and so hits distinct banks, whereas the
// unpadded stride of 4, 8, ... words would meet 4-, 8-, ... way bank conflicts. A run of 2^shift
// elements from a multiple of 2^shift stays contiguous (one address, immediate offsets).
__device__ __forceinline__ int skew(int q, int shift, int pad) { return q + pad * (q >> shift); }

// The forward steps' layout: runs of R (a thread's outputs); one padding element in `regwin`; in `vec`
// one 16-byte vector, or none where R is one vector (the lanes' vectors are then contiguous already).
template <class T, int R, bool VEC>
struct WindowLayout {
  static constexpr int W = 16 / sizeof(T);  // elements per 16-byte vector
  static constexpr int SHIFT = R == 16 ? 4 : R == 8 ? 3 : 2;
  static constexpr int PAD = VEC ? ((R / W) % 2 ? 0 : W) : 1;
  static_assert((1 << SHIFT) == R && R % W == 0, "R: 4, 8 or 16, a whole number of vectors");
  __device__ static __forceinline__ int slot(int q) { return skew(q, SHIFT, PAD); }
};

__device__ __forceinline__ bool aligned16(const void* base, long long byte_offset) {
  return ((reinterpret_cast<unsigned long long>(base) + (unsigned long long)byte_offset) & 15ULL) == 0;
}

// dst[j] = src[j] for j < COUNT: a run of contiguous slots (16-byte aligned for VEC).
template <class T, bool VEC, int COUNT>
__device__ __forceinline__ void load_run(T* dst, const T* src) {
  if constexpr (VEC) {
    typedef typename Vec16<T>::type V;
    constexpr int W = 16 / sizeof(T);
#pragma unroll
    for (int j = 0; j < COUNT; j += W) {
      V v = *reinterpret_cast<const V*>(src + j);
      dst[j] = v.x;
      dst[j + 1] = v.y;
      if constexpr (W == 4) {
        dst[j + 2] = v.z;
        dst[j + 3] = v.w;
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < COUNT; ++j) dst[j] = src[j];
  }
}

// dst[slot(q)] = src[q] for q < count, every src[q] in bounds; slot(t) = first and slot(q + B) = slot(q)
// + step (the block size is a multiple of the padding run): no skew arithmetic in the loop.
template <class T>
__device__ __forceinline__ void stage_run(T* dst, const T* __restrict__ src, int count, int first, int step) {
  const int t = threadIdx.x, B = blockDim.x;
  int slot = first;
#pragma unroll 2
  for (int q = t; q < count; q += B, slot += step) dst[slot] = src[q];
}

// The same with 16-byte vectors v < nvec (src aligned): first = slot(t * W), step = slot(B * W).
template <class T>
__device__ __forceinline__ void stage_run_vec(T* dst, const T* __restrict__ src, int nvec, int first, int step) {
  typedef typename Vec16<T>::type V;
  const int t = threadIdx.x, B = blockDim.x;
  int slot = first;
#pragma unroll 2
  for (int v = t; v < nvec; v += B, slot += step)
    *reinterpret_cast<V*>(dst + slot) = reinterpret_cast<const V*>(src)[v];
}

// Stage ss[slot(q)] = s[p0 + q] for q < count (p0 = o0 + c0 the window's first position) and a zero at
// q = count (the spare slot a vector read past the window's end touches; never multiplied). A window
// inside sig (and, periodic, not wrapping) is copied without bounds checks, with vector loads in `vec`
// when sig + start is 16-byte aligned; any other window element by element.
template <class T, int R, bool VEC>
__device__ __forceinline__ void stage_window(T* ss, const T* __restrict__ sig, long long N, long long offset,
                                             int periodic, long long p0, int count) {
  const int t = threadIdx.x, B = blockDim.x;
  const long long g0 = p0 + offset;  // sig index of q = 0 (before any wrap)
  const long long start = periodic ? wrap(g0, N) : g0;
  typedef WindowLayout<T, R, VEC> Lay;
  if (start >= 0 && start + count <= N) {
    int done = 0;
    if constexpr (VEC) {
      constexpr int W = Lay::W;
      if (aligned16(sig, start * (long long)sizeof(T))) {
        stage_run_vec<T>(ss, sig + start, count / W, Lay::slot(t * W), Lay::slot(B * W));
        done = count / W * W;
      }
    }
    if (done == 0) stage_run<T>(ss, sig + start, count, Lay::slot(t), Lay::slot(B));
    else
      for (int q = done + t; q < count; q += B) ss[Lay::slot(q)] = sig[start + q];
  } else {
    for (int q = t; q < count; q += B) {
      long long pos = start + q;
      if (periodic) pos = pos < N ? pos : (pos - N < N ? pos - N : pos % N);
      ss[Lay::slot(q)] = (periodic || (pos >= 0 && pos < N)) ? sig[pos] : T(0);
    }
  }
  if (t == 0) ss[Lay::slot(count)] = T(0);
}

// The forward body of `regwin` (VEC = false) and `vec` (VEC = true). Block tile of TILE = B * R outputs,
// thread t owns outputs o0 + tR + r (r < R). Per filter chunk c0 (count = min(L - c0, LADDER_TAPS) taps):
//   fs[c] = f'[c0 + c]                 (c < count)
//   ss[slot(q)] = s[o0 + c0 + q]       (q < TILE + count - 1: the tile plus a halo of count - 1)
//   acc[r] += fs[c] * ss[tR + r + c]
// The inner loop takes R taps at a time with a window xa[0 .. 2R-1] = ss[tR + c .. tR + c + 2R - 1] in
// registers: R^2 FMAs per R new x values and R filter values, then xa slides by R. Chunks whose terms
// touch the zero padding (non-periodic ends) add only the real terms, one output at a time.
template <class T, int R, bool VEC>
__device__ __forceinline__ void correlate_window(const T* __restrict__ sig, long long N, long long offset,
                                                 int periodic, const T* __restrict__ f, long long L, int flip,
                                                 T* __restrict__ out, long long M, T bias, int epilogue,
                                                 const T* __restrict__ gate) {
  const int B = blockDim.x, t = threadIdx.x, TILE = B * R, base = t * R;
  const int taps = (int)min(L, (long long)LADDER_TAPS);
  T* ss = dynamic_shared<T>();
  typedef WindowLayout<T, R, VEC> Lay;
  constexpr int W = Lay::W;
  T* fs = ss + (Lay::slot(TILE + taps - 1) + W) / W * W;  // 16-byte aligned, past ss[slot(TILE + taps - 1)]
  const long long lo = -offset, hi = N - offset;  // non-periodic: s[q] is sig data for lo <= q < hi
  const long long tiles = (M + TILE - 1) / TILE;
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const long long o0 = tile * TILE;
    T acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = T(0);
    for (long long c0 = 0; c0 < L; c0 += LADDER_TAPS) {
      const int count = (int)min((long long)LADDER_TAPS, L - c0);
      __syncthreads();  // everyone is done reading the previous chunk
      for (int c = t; c < count; c += B) {
        const long long i = c0 + c;
        fs[c] = flip ? f[L - 1 - i] : f[i];
      }
      stage_window<T, R, VEC>(ss, sig, N, offset, periodic, o0 + c0, TILE + count - 1);
      __syncthreads();
      const long long last = min(o0 + TILE, M) - 1 + c0 + count - 1;  // furthest signal position used
      if (periodic || (o0 + c0 >= lo && last < hi)) {  // interior chunk: every term is a real one
        T xa[2 * R];
        load_run<T, VEC, R>(xa, ss + Lay::slot(base));
        int c = 0;
        for (; c + R <= count; c += R) {
          T fr[R];
          load_run<T, VEC, R>(xa + R, ss + Lay::slot(base + c + R));  // xa[2R-1] is never multiplied
          if constexpr (VEC) {
            typedef typename Vec16<T>::type V;
#pragma unroll
            for (int u = 0; u < R; u += W) {
              V v = *reinterpret_cast<const V*>(fs + c + u);
              fr[u] = v.x;
              fr[u + 1] = v.y;
              if constexpr (W == 4) {
                fr[u + 2] = v.z;
                fr[u + 3] = v.w;
              }
            }
          } else {
#pragma unroll
            for (int u = 0; u < R; ++u) fr[u] = fs[c + u];
          }
#pragma unroll
          for (int u = 0; u < R; ++u)
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r] += fr[u] * xa[r + u];
#pragma unroll
          for (int r = 0; r < R; ++r) xa[r] = xa[r + R];
        }
        const int rem = count - c;  // < R taps left: xa[R .. R + rem - 2] completes their window
        const T* tail = ss + Lay::slot(base + c + R);  // a run of R slots
#pragma unroll
        for (int u = 0; u < R - 1; ++u)
          if (u < rem - 1) xa[R + u] = tail[u];
#pragma unroll
        for (int u = 0; u < R - 1; ++u)
          if (u < rem) {
            const T w = fs[c + u];
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r] += w * xa[r + u];
          }
      } else {
#pragma unroll
        for (int r = 0; r < R; ++r) {  // chunk touching the padding: real taps only
          const long long o = o0 + base + r;
          const int cend = (int)max(0LL, min((long long)count, hi - o - c0));
          for (int c = (int)max(0LL, min((long long)count, lo - o - c0)); c < cend; ++c)
            acc[r] += fs[c] * ss[Lay::slot(base + r + c)];
        }
      }
    }
    const long long o = o0 + base;
    if (VEC && o + R <= M && aligned16(out, o * (long long)sizeof(T))) {
      typedef typename Vec16<T>::type V;
#pragma unroll
      for (int r = 0; r < R; r += W) {
        V v;
        v.x = finish(acc[r] + bias, o + r, epilogue, gate);
        v.y = finish(acc[r + 1] + bias, o + r + 1, epilogue, gate);
        if constexpr (W == 4) {
          v.z = finish(acc[r + 2] + bias, o + r + 2, epilogue, gate);
          v.w = finish(acc[r + 3] + bias, o + r + 3, epilogue, gate);
        }
        *reinterpret_cast<V*>(out + o + r) = v;
      }
    } else {
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (o + r < M) out[o + r] = finish(acc[r] + bias, o + r, epilogue, gate);
    }
  }
}

// Step `regwin`: R contiguous outputs per thread, register sliding window, halo k-1, scalar loads.
template <class T, int R, int MAXB>
__global__ void __launch_bounds__(MAXB, 1)
correlate_regwin(const T* __restrict__ sig, long long N, long long offset, int periodic,
                 const T* __restrict__ f, long long L, int flip, T* __restrict__ out, long long M,
                 T bias, int epilogue, const T* __restrict__ gate) {
  correlate_window<T, R, false>(sig, N, offset, periodic, f, L, flip, out, M, bias, epilogue, gate);
}

// Step `vec`: same as regwin but with 16-byte loads and stores where aligned.
template <class T, int R, int MAXB>
__global__ void __launch_bounds__(MAXB, 1)
correlate_vec(const T* __restrict__ sig, long long N, long long offset, int periodic,
              const T* __restrict__ f, long long L, int flip, T* __restrict__ out, long long M,
              T bias, int epilogue, const T* __restrict__ gate) {
  correlate_window<T, R, true>(sig, N, offset, periodic, f, L, flip, out, M, bias, epilogue, gate);
}


// dst[skew(q, sh, 1)] = src[q] for q < count (src 16-byte aligned, count a multiple of a vector, runs of
// 2^sh a multiple of a vector: a vector's elements stay in one run): STAGE_LOADS vectors per thread loaded
// into registers, then stored, so that they are all in flight at once.
template <class T>
__device__ __forceinline__ void stage_skewed_vec(T* dst, const T* __restrict__ src, int count, int sh) {
  typedef typename Vec16<T>::type V;
  constexpr int W = 16 / sizeof(T);
  const int t = threadIdx.x, B = blockDim.x, nvec = count / W;
  const V* vs = reinterpret_cast<const V*>(src);
  int v = t;
  for (; v + (STAGE_LOADS - 1) * B < nvec; v += STAGE_LOADS * B) {
    V r[STAGE_LOADS];
#pragma unroll
    for (int u = 0; u < STAGE_LOADS; ++u) r[u] = vs[v + u * B];
#pragma unroll
    for (int u = 0; u < STAGE_LOADS; ++u) {
      T* d = dst + skew((v + u * B) * W, sh, 1);
      d[0] = r[u].x;
      d[1] = r[u].y;
      if constexpr (W == 4) {
        d[2] = r[u].z;
        d[3] = r[u].w;
      }
    }
  }
  for (; v < nvec; v += B) {
    const V r = vs[v];
    T* d = dst + skew(v * W, sh, 1);
    d[0] = r.x;
    d[1] = r.y;
    if constexpr (W == 4) {
      d[2] = r.z;
      d[3] = r.w;
    }
  }
}

// Step `wg_regwin` (STREAM = false) and `wg_stream` (STREAM = true: vector staging where g and x are 16-byte
// aligned, scalar otherwise). Block (tile, split) of a grid (tiles, splits); the block's B threads are G tap groups
// (G a power of two, B / G >= 32: a warp holds one group) of S = B / G threads. Tap tile i0 = tile * KT,
// KT = G * TP; thread t is group tg = t / S, slice js = t % S and owns taps i0 + tg * TP + u (u < TP).
// j goes over the chunks split, split + splits, ... of JC = S * JS values (JS a multiple of TP):
//   gs[slot(q)] = g[j0 + q] (q < JC),   xs[slot(q)] = x[j0 + i0 + q] (q < JC + KT: halo KT - 1 + a spare)
//   slot(q) = skew(q, log2 JS, 1): lanes read at a stride of JS + 1 slots
//   acc[u] += gs[jb + jj] * xs[jb + jj + tg * TP + u]    for jj < JS, jb = js * JS, j0 + jb + jj < m
// taken TP values of j at a time with a window xa[0 .. 2TP-1] in registers. Then the S partial sums of
// a tap are added in a fixed order: __shfl_down_sync within the warp, the S / 32 warps in order through
// shared memory red[warp][TP], stored at partial[split * k + i] (i reversed when flip).
template <class T, int TP, int MAXB, bool STREAM>
__device__ __forceinline__ void weight_grad_window(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ partial, long long n,
                   long long m, long long k, int flip, int G, int JS) {
  const int B = blockDim.x, t = threadIdx.x, S = B / G, tg = t / S, js = t % S, lane = t % 32, w = t / 32;
  const int KT = G * TP, JC = S * JS, XW = JC + KT - 1;
  T* gs = dynamic_shared<T>();
  const int sh = __ffs(JS) - 1;  // JS is a power of two
  T* xs = gs + skew(JC - 1, sh, 1) + 1;
  T* red = xs + skew(XW, sh, 1) + 1;  // [B / 32][TP]
  const long long split = blockIdx.y, splits = gridDim.y;
  const long long tiles = (k + KT - 1) / KT, chunks = (m + JC - 1) / JC;
  const int jb = js * JS, ib = jb + tg * TP;
  // vector staging: g and x 16-byte aligned (j0 and i0 are multiples of a vector, as JC and KT are)
  const bool vec = STREAM && aligned16(g, 0) && aligned16(x, 0);
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const long long i0 = tile * KT;
    T acc[TP];
#pragma unroll
    for (int u = 0; u < TP; ++u) acc[u] = T(0);
    for (long long chunk = split; chunk < chunks; chunk += splits) {
      const long long j0 = chunk * JC;
      __syncthreads();  // everyone is done reading the previous chunk
      if (STREAM && vec && j0 + JC <= m) stage_skewed_vec<T>(gs, g + j0, JC, sh);
      else if (j0 + JC <= m) stage_run<T>(gs, g + j0, JC, skew(t, sh, 1), skew(B, sh, 1));  // no bounds checks
      else
        for (int q = t; q < JC; q += B) gs[skew(q, sh, 1)] = j0 + q < m ? g[j0 + q] : T(0);
      if (STREAM && vec && j0 + i0 + XW < n) stage_skewed_vec<T>(xs, x + j0 + i0, XW + 1, sh);
      else if (j0 + i0 + XW < n) stage_run<T>(xs, x + j0 + i0, XW + 1, skew(t, sh, 1), skew(B, sh, 1));
      else
        for (int q = t; q <= XW; q += B) xs[skew(q, sh, 1)] = j0 + i0 + q < n ? x[j0 + i0 + q] : T(0);
      __syncthreads();
      const int jn = (int)max(0LL, min((long long)JS, m - j0 - jb));  // this slice's j (none past m)
      if (jn > 0) {
        T xa[2 * TP];
        load_run<T, false, TP>(xa, xs + skew(ib, sh, 1));
        int jj = 0;
        for (; jj + TP <= jn; jj += TP) {
          load_run<T, false, TP>(xa + TP, xs + skew(ib + jj + TP, sh, 1));  // xa[2TP-1] only slides down
          const T* gr = gs + skew(jb + jj, sh, 1);  // a run of TP slots (JS a multiple of TP)
#pragma unroll
          for (int v = 0; v < TP; ++v) {
            const T gj = gr[v];
#pragma unroll
            for (int u = 0; u < TP; ++u) acc[u] += gj * xa[u + v];
          }
#pragma unroll
          for (int u = 0; u < TP; ++u) xa[u] = xa[u + TP];
        }
        const int rem = jn - jj;  // < TP values of j left
        const T* xr = xs + skew(ib + jj + TP, sh, 1);
        const T* gr = gs + skew(jb + jj, sh, 1);
#pragma unroll
        for (int v = 0; v < TP - 1; ++v)
          if (v < rem - 1) xa[TP + v] = xr[v];
#pragma unroll
        for (int v = 0; v < TP - 1; ++v)
          if (v < rem) {
            const T gj = gr[v];
#pragma unroll
            for (int u = 0; u < TP; ++u) acc[u] += gj * xa[u + v];
          }
      }
    }
#pragma unroll
    for (int u = 0; u < TP; ++u)
#pragma unroll
      for (int d = 16; d > 0; d /= 2) acc[u] += __shfl_down_sync(0xffffffffu, acc[u], d);
    __syncthreads();  // red may be read by the previous tile's sums
    if (lane == 0)
#pragma unroll
      for (int u = 0; u < TP; ++u) red[w * TP + u] = acc[u];
    __syncthreads();
    const int warps_per_group = S / 32;
    for (int q = t; q < KT; q += B) {
      const long long i = i0 + q;
      if (i < k) {
        const int group = q / TP, u = q % TP;
        T v = red[group * warps_per_group * TP + u];
        for (int ww = 1; ww < warps_per_group; ++ww) v += red[(group * warps_per_group + ww) * TP + u];
        partial[split * k + (flip ? k - 1 - i : i)] = v;
      }
    }
  }
}

template <class T, int TP, int MAXB>
__global__ void __launch_bounds__(MAXB, 1)
weight_grad_regwin(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ partial, long long n,
                   long long m, long long k, int flip, int G, int JS) {
  weight_grad_window<T, TP, MAXB, false>(x, g, partial, n, m, k, flip, G, JS);
}

template <class T, int TP, int MAXB>
__global__ void __launch_bounds__(MAXB, 1)
weight_grad_stream(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ partial, long long n,
                   long long m, long long k, int flip, int G, int JS) {
  weight_grad_window<T, TP, MAXB, true>(x, g, partial, n, m, k, flip, G, JS);
}

// out[c] = sum_{b < rows} partial[b * cols + c], one block per column (grid-stride over columns): thread
// t adds rows t, t + B, ... in order, then a __shfl_down_sync tree and the warps in order. The order
// depends only on blockDim.x: the same bits on every run with the same block.
template <class T>
__global__ void __launch_bounds__(1024)
wg_sum_partials(const T* __restrict__ partial, long long rows, long long cols, T* __restrict__ out) {
  __shared__ T warp_sums[32];
  const int B = blockDim.x, t = threadIdx.x, lane = t % 32, w = t / 32;
  for (long long c = blockIdx.x; c < cols; c += gridDim.x) {
    T v = T(0);
    for (long long b = t; b < rows; b += B) v += partial[b * cols + c];
#pragma unroll
    for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
    __syncthreads();  // the previous column's sum has been read
    if (lane == 0) warp_sums[w] = v;
    __syncthreads();
    if (t == 0) {
      T s = warp_sums[0];
      for (int ww = 1; ww < B / 32; ++ww) s += warp_sums[ww];
      out[c] = s;
    }
  }
}
