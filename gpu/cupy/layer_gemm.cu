// The kernel ladder of the batched conv1d layer (kernels/layer.py), steps beyond gpu/cupy/layer.cu's
// `direct`; launched by gpu/cupy/layer_gemm.py. Math and shapes: kernels/layer.py.
//
//   x (N, C_in, L)   w (C_out, C_in/groups, K)   b (C_out) or empty   y, g (N, C_out, L_out)
//   y[n, co, l]  = b[co] + sum_{c, t} w[co, c, t] xpad[n, ci, l*stride + t*dilation]
//   dw[co, c, t] = sum_{n, l} g[n, co, l] xpad[n, ci, l*stride + t*dilation],  db[co] = sum_{n, l} g[n, co, l]
//   dx[n, ci, j] = sum_{co, t: l*stride + t*dilation - padding = j, 0 <= l < L_out} g[n, co, l] w[co, c, t]
//
// Ladder (registered under these names, never renumbered):
//   direct  (layer.cu) one thread per output element: every product reads both operands from
//           global memory / L1 (2 loads per FMA); dx with a 64-bit division per term; dw and db one
//           thread per (chunk, column), a dot product of g and x read from global memory
//   gemm    each op as an implicit GEMM per (n, group) with register micro-tiles: a thread owns TM x TN
//           outputs (8 x 8 float, 8 x 4 double) and per reduction step loads TM + TN operands from shared
//           memory (4 LDS.128) for TM * TN FMAs; operand tiles of BK = 16 reduction steps staged in
//           shared memory by the whole block (im2col built on the fly: no im2col buffer in memory).
//             forward  M = C_out/groups, N = L_out, reduction (c, t): W (C_out/g x C_in/g*K) @ im2col(x)
//             dx       per residue class rho = (j + padding) mod stride: j = rho - padding + stride*m,
//                      whose taps are t = t0 + u*(stride/gcd(stride, dilation)) at l = m - e_t,
//                      e_t = (t*dilation - rho)/stride, so M = C_in/g, N = m, reduction (co, u):
//                      W^T @ shifted g, no division or modulo in the inner loop (one per table entry of
//                      BK steps); terms on l outside [0, L_out) are absent (not multiplied zeros): the
//                      edge tiles skip them by a predicate, interior tiles run unpredicated
//             dw, db   M = (c, t), N = co (or the reverse, whichever tiles waste less), reduction over the
//                      flat positions (n, l) split in fixed chunks of the sizes only: im2col(x)^T @ g^T
//                      per chunk into a workspace of partials
//                      (db: column sums of the staged g), then layer_gemm_sum_splits adds the chunks of
//                      each column in a fixed order: the same bits on every run
//
// What limits each step (plots/model/layer.py reads it off the sm_90 SASS; the numbers are in the targets
// table, plots/<device>-model/targets.md): direct issues two L1 loads per FMA (forward, dw) and a 64-bit
// division per term (dx); gemm is bound by instruction issue: a chunk of BK x TM x TN FFMA per thread comes
// with its staging (~10 instructions per element) and 16-byte shared loads; dw adds its split sum. Depthwise and
// other small groups (C/groups < 8) leave most of a 64 x 128 tile empty: there gemm is far slower than
// direct (those shapes are per-channel correlations, not GEMMs: direct serves them). float64 has half the FMA
// lanes, so the same instruction mix reaches a larger share of its peak.
//
// Block tile: TX = 16 threads along N, TY = blockDim.x / 16 along M; BM = TY * TM rows, BN = 16 * TN
// columns. Thread (ty, tx) owns rows {ty*TM/2 + i, BM/2 + ty*TM/2 + i} and columns {tx*TN/2 + j, BN/2 +
// tx*TN/2 + j} (i < TM/2, j < TN/2): the two halves make the lanes' 16-byte shared reads contiguous (no
// bank conflicts). Shared memory (dynamic, gpu/cupy/layer_gemm.py shared_bytes):
//   As[BK][BM + PAD] (M operand, transposed), Bs[BK][BN + PAD] (N operand), then the index tables.
// Every global index is a long long (row positions and in-tile offsets are int, below 2^30 as the launcher
// checks); MAXB, the last template argument, is the __launch_bounds__ and the largest block accepted
// (gpu/cupy/layer_gemm.py BOUNDS); the block is a power of two in [32, MAXB]. At block 128 ptxas gives
// 170-210 registers (float): 2 blocks, 8 warps per SM, each warp with 64 independent FMA chains.
//
// The instantiations are listed by the launcher (gpu/cupy/layer_gemm.py NAMES), with the launch bound.

#include "common.cuh"

#if !defined(LAYER_BK) || !defined(LAYER_TX) || !defined(LAYER_PAD)
#error "layer_gemm.cu needs its tunables as -D options: gpu/cupy/tunables.py (DEFINES) lists them"
#endif

constexpr int BK = LAYER_BK, TX = LAYER_TX, PAD = LAYER_PAD;

// dst[q] = src[q] for q < COUNT, src 16-byte aligned: COUNT * sizeof(T) / 16 vector loads.
template <class T, int COUNT>
__device__ __forceinline__ void load_vec(T* dst, const T* src) {
  typedef typename Vec16<T>::type V;
  constexpr int W = 16 / sizeof(T);
  static_assert(COUNT % W == 0, "a whole number of 16-byte vectors");
#pragma unroll
  for (int q = 0; q < COUNT; q += W) {
    const V v = *reinterpret_cast<const V*>(src + q);
    dst[q] = v.x;
    dst[q + 1] = v.y;
    if constexpr (W == 4) {
      dst[q + 2] = v.z;
      dst[q + 3] = v.w;
    }
  }
}

// floor(a / b) for b > 0
__device__ __forceinline__ long long lfloor_div(long long a, long long b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// Offset of half-tile element h < T2 of thread coordinate k in a tile of `size` (= 2 * threads * T2).
__device__ __forceinline__ int half_offset(int k, int h, int T2, int size) {
  return h < T2 ? k * T2 + h : size / 2 + k * T2 + (h - T2);
}

// acc[i][j] += A[kk][row i] * B[kk][col j] for kk < BK (the block's chunk): 4 vector loads (TM + TN
// values) per TM * TN FMAs. EDGE (dx only): the term of column j at step kk is absent unless 0 <=
// mcol + col(j) - e[kk] < L_out (its g position lies in g), and is then skipped, not multiplied.
template <class T, int TM, int TN, bool EDGE>
__device__ __forceinline__ void mma_chunk(const T* As, int lda, const T* Bs, int ldb, int ty, int tx, int BM,
                                          T (&acc)[TM][TN], const int* e, long long mcol, long long L_out) {
#pragma unroll
  for (int kk = 0; kk < BK; ++kk) {
    T a[TM], b[TN];
    load_vec<T, TM / 2>(a, As + kk * lda + ty * (TM / 2));
    load_vec<T, TM / 2>(a + TM / 2, As + kk * lda + BM / 2 + ty * (TM / 2));
    load_vec<T, TN / 2>(b, Bs + kk * ldb + tx * (TN / 2));
    load_vec<T, TN / 2>(b + TN / 2, Bs + kk * ldb + TX * (TN / 2) + tx * (TN / 2));
    if constexpr (EDGE) {
      const long long base = mcol - e[kk];
      bool ok[TN];
#pragma unroll
      for (int j = 0; j < TN; ++j)
        ok[j] = (unsigned long long)(base + half_offset(tx, j, TN / 2, TX * TN)) < (unsigned long long)L_out;
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j)
          if (ok[j]) acc[i][j] += a[i] * b[j];
    } else {
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

template <class T, int TM, int TN>
__device__ __forceinline__ void zero_acc(T (&acc)[TM][TN]) {
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
}

// ok ? *p : 0 without a branch: the load reads `safe` (an element known to exist) where !ok.
template <class T>
__device__ __forceinline__ T load_or_zero(bool ok, const T* p, const T* safe) {
  const T v = __ldg(ok ? p : safe);
  return ok ? v : T(0);
}

// (q, r) = divmod(ch*BK + i, d) for d > 0, from its value at ch - 1 (no division past ch = 0): the table
// fills of the chunk loops advance one chunk per call. dq, dr = divmod(BK, d).
__device__ __forceinline__ void advance(int ch, int i, int d, int dq, int dr, int& q, int& r) {
  if (ch == 0) {
    q = i / d;
    r = i - q * d;
  } else {
    q += dq;
    r += dr;
    if (r >= d) {
      r -= d;
      ++q;
    }
  }
}

// Table entries in shared memory (16 bytes: one vector load): a pointer or a 64-bit offset, and two 32-bit
// values (meaning per kernel). A pointer into the row makes an element's address one IMAD.WIDE.
template <class T>
struct __align__(16) Entry {
  const T* p;
  int pos, aux;
};
struct __align__(16) Offset {
  long long off;
  int pos, aux;
};

// Row positions are 32-bit (the launcher checks that L + 2*padding + (BN + 1)*stride + K*dilation <
// 2^30): an entry that must stage a zero carries FAR, so that any position built from it is negative.
constexpr int FAR = -(1 << 30);

// Staging. The M operand As[BK][BM] has A_PER = BK*TM/TX elements per thread whatever the block (BM =
// blockDim.x / TX * TM): the loops over them are unrolled. The N operand Bs[BK][BN] has BK*BN/blockDim.x:
// up to BN threads each take whole columns (all BK steps, unrolled), more take every blockDim.x/BN-th step.

// Forward. Tile (n, group gr, column tile lt, row tile mt): rows co = mt*BM + row (within the group),
// columns l = lt*BN + col; reduction r = c*K + t < R = C_in_g*K in chunks of BK:
//   As[kk][row] = w[gr*C_out_g + co, r0 + kk]                        (w as C_out x R, row-major)
//   Bs[kk][col] = xpad[n, gr*C_in_g + c, l*stride + t*dilation]      (c, t) = divmod(r0 + kk, K)
// tab[kk] = (row c of x, t*dilation - padding) of each chunk's steps is filled one chunk ahead (two
// buffers), so a chunk takes two barriers. A padded position stages a zero that is multiplied, as in the
// reference.
template <class T, int TM, int TN, int MAXB>
__global__ void __launch_bounds__(MAXB)
    layer_gemm_forward(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                       long long N, long long C_in, long long L, long long C_out, long long K, long long L_out,
                       long long stride, long long padding, long long dilation, long long groups, int has_bias) {
  constexpr int BN = TX * TN, ldb = BN + PAD, A_PER = BK * TM / TX;
  const int tid = threadIdx.x, ty = tid / TX, tx = tid % TX, BM = (blockDim.x / TX) * TM, lda = BM + PAD;
  T* As = dynamic_shared<T>();
  T* Bs = As + BK * lda;
  Entry<T>* tab = reinterpret_cast<Entry<T>*>(Bs + BK * ldb);  // [2][BK]
  const long long C_in_g = C_in / groups, C_out_g = C_out / groups;
  const int R = int(C_in_g * K), s = int(stride), Li = int(L);
  const long long m_tiles = (C_out_g + BM - 1) / BM, n_tiles = (L_out + BN - 1) / BN;
  const long long tiles = N * groups * n_tiles * m_tiles;
  const int chunks = (R + BK - 1) / BK, akk = tid % BK, arow = tid / BK, astep = blockDim.x / BK;
  const int Ki = int(K), kq = BK / Ki, kr = BK % Ki, arstep = astep * R;
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const long long mt = tile % m_tiles, rest = tile / m_tiles, lt = rest % n_tiles, ng = rest / n_tiles;
    const long long gr = ng % groups, n = ng / groups, co0 = mt * BM, l0 = lt * BN;
    const int rows = int(min((long long)BM, C_out_g - co0)), p0 = int(l0 * stride);
    const T* wa = w + (gr * C_out_g + co0 + arow) * R + akk;  // this thread's w column, row arow
    const T* xn = x + (n * C_in + gr * C_in_g) * L;
    int c = 0, t = 0;  // (c, t) = divmod(r, K) of this thread's r = ch*BK + tid, one chunk further per call
    auto fill_table = [&](int ch, int buf) {
      if (tid < BK) {
        advance(ch, tid, Ki, kq, kr, c, t);
        tab[buf * BK + tid] = ch * BK + tid < R ? Entry<T>{xn + c * L, int(t * dilation - padding), 0}
                                                : Entry<T>{xn, FAR, 0};
      }
    };
    auto stage_b = [&](int col, int kk, int buf, int pc) {
      const Entry<T> e = tab[buf * BK + kk];
      const int pos = pc + e.pos;
      Bs[kk * ldb + col] = load_or_zero((unsigned)pos < (unsigned)Li, e.p + pos, w);
    };
    T acc[TM][TN];
    zero_acc(acc);
    fill_table(0, 0);
    __syncthreads();
    for (int ch = 0; ch < chunks; ++ch) {
      const int buf = ch & 1, r0 = ch * BK;
      const bool a_in = r0 + akk < R;
#pragma unroll
      for (int i = 0; i < A_PER; ++i) {  // As: kk fastest (w rows are contiguous in r)
        const int row = arow + i * astep;
        As[akk * lda + row] = load_or_zero(a_in && row < rows, wa + r0 + i * arstep, w);
      }
      if (blockDim.x <= BN) {  // Bs: columns fastest (coalesced along x)
        for (int col = tid; col < BN; col += blockDim.x) {
#pragma unroll
          for (int kk = 0; kk < BK; ++kk) stage_b(col, kk, buf, p0 + col * s);
        }
      } else {
        for (int kk = tid / BN; kk < BK; kk += blockDim.x / BN) stage_b(tid % BN, kk, buf, p0 + (tid % BN) * s);
      }
      if (ch + 1 < chunks) fill_table(ch + 1, buf ^ 1);
      __syncthreads();
      mma_chunk<T, TM, TN, false>(As, lda, Bs, ldb, ty, tx, BM, acc, nullptr, 0, 0);
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const long long co = co0 + half_offset(ty, i, TM / 2, BM);
      if (co >= C_out_g) continue;
      const long long oc = gr * C_out_g + co;
      const T bias = has_bias ? b[oc] : T(0);
      T* yr = y + (n * C_out + oc) * L_out;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const long long l = l0 + half_offset(tx, j, TN / 2, BN);
        if (l < L_out) yr[l] = has_bias ? acc[i][j] + bias : acc[i][j];
      }
    }
  }
}

// Input gradient. Tile (n, group gr, class rho < stride, row tile ct, column tile mt): rows c = ct*BM +
// row, columns m = m_lo + mt*BN + col, the outputs j = rho - padding + stride*m for m in [m_lo, m_hi]
// (j in [0, L)). The class's taps t_u = t0 + u*t_step (u < T) meet l = m - e_u, e_u = (t_u*dilation -
// rho)/stride; reduction q = co*T + u < C_out_g*T in chunks of BK, with the tables wtab[kk] = (w at
// (co, 0, t_u), valid) and gtab[kk] = (row co of g, e_u) filled one chunk ahead:
//   As[kk][row] = w[gr*C_out_g + co, c, t_u]       Bs[kk][col] = g[n, gr*C_out_g + co, m - e_u] (0 outside)
// A class without taps (T = 0) writes zeros. Terms with l outside [0, L_out) are absent: a tile whose
// columns all see l inside runs mma_chunk unpredicated, an edge tile skips them (EDGE).
template <class T, int TM, int TN, int MAXB>
__global__ void __launch_bounds__(MAXB)
    layer_gemm_input_grad(const T* __restrict__ w, const T* __restrict__ g, T* __restrict__ dx, long long N,
                          long long C_in, long long L, long long C_out, long long K, long long L_out,
                          long long stride, long long padding, long long dilation, long long groups,
                          long long t_step, long long col_tiles) {
  constexpr int BN = TX * TN, ldb = BN + PAD, A_PER = BK * TM / TX, A_STEP = TX / TM;
  const int tid = threadIdx.x, ty = tid / TX, tx = tid % TX, BM = (blockDim.x / TX) * TM, lda = BM + PAD;
  T* As = dynamic_shared<T>();
  T* Bs = As + BK * lda;
  Entry<T>* wtab = reinterpret_cast<Entry<T>*>(Bs + BK * ldb);  // [2][BK]
  Entry<T>* gtab = wtab + 2 * BK;                                 // [2][BK]
  int* etab = reinterpret_cast<int*>(gtab + 2 * BK);       // [2][BK]: e_u, for the EDGE predicate
  const long long C_in_g = C_in / groups, C_out_g = C_out / groups;
  const long long row_tiles = (C_in_g + BM - 1) / BM;
  const long long tiles = N * groups * stride * row_tiles * col_tiles;
  const int Lo = int(L_out), c = tid % BM, akk = tid / BM;  // As: BM = blockDim.x / A_STEP
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    long long rest = tile;
    const long long ct = rest % row_tiles;
    rest /= row_tiles;
    const long long mt = rest % col_tiles;
    rest /= col_tiles;
    const long long rho = rest % stride;
    rest /= stride;
    const long long gr = rest % groups, n = rest / groups;
    const long long m_lo = (padding - rho + stride - 1) / stride;  // j >= 0 (padding - rho > -stride)
    const long long m_hi = lfloor_div(L - 1 + padding - rho, stride);  // j < L
    const long long mb = m_lo + mt * BN, c0 = ct * BM;
    if (mb > m_hi) continue;  // the class has fewer columns than the widest one (block-uniform)
    long long t0 = 0;
    while (t0 < t_step && ((t0 * dilation - rho) % stride + stride) % stride != 0) ++t0;
    const int taps = t0 < t_step && t0 < K ? int((K - 1 - t0) / t_step + 1) : 0;
    const int Q = int(C_out_g) * taps, chunks = (Q + BK - 1) / BK;
    const long long e_min = taps ? (t0 * dilation - rho) / stride : 0;
    const long long e_max = taps ? ((t0 + (taps - 1) * t_step) * dilation - rho) / stride : 0;
    const bool interior = mb - e_max >= 0 && min(mb + BN - 1, m_hi) - e_min <= L_out - 1;
    const T* gn = g + (n * C_out + gr * C_out_g) * L_out;
    const T* wg = w + (gr * C_out_g) * C_in_g * K;
    const int cK = int((c0 + c) * K);  // this thread's input channel
    const bool c_in = c0 + c < C_in_g;
    const int mbi = int(mb);
    const int tq = taps ? BK / taps : 0, tr = taps ? BK % taps : 0;
    int co = 0, u = 0;  // (co, u) = divmod(q, taps) of this thread's q = ch*BK + tid, one chunk further per call
    auto fill_table = [&](int ch, int buf) {
      if (tid < BK) {
        const int q = ch * BK + tid, i = buf * BK + tid;
        if (q < Q) {
          advance(ch, tid, taps, tq, tr, co, u);
          const long long t = t0 + u * t_step;
          const int e = int((t * dilation - rho) / stride);
          wtab[i] = Entry<T>{wg + co * C_in_g * K + t, 0, 1};
          gtab[i] = Entry<T>{gn + co * L_out, e, 0};
          etab[i] = e;
        } else {
          wtab[i] = Entry<T>{wg, 0, 0};
          gtab[i] = Entry<T>{gn, -FAR, 0};
          etab[i] = -FAR;
        }
      }
    };
    auto stage_b = [&](int col, int kk, int buf) {
      const Entry<T> e = gtab[buf * BK + kk];
      const int l = mbi + col - e.pos;
      Bs[kk * ldb + col] = load_or_zero((unsigned)l < (unsigned)Lo, e.p + l, w);
    };
    T acc[TM][TN];
    zero_acc(acc);
    fill_table(0, 0);
    __syncthreads();
    for (int ch = 0; ch < chunks; ++ch) {
      const int buf = ch & 1;
#pragma unroll
      for (int i = 0; i < A_PER; ++i) {  // As: rows (c) fastest, conflict-free shared stores
        const int kk = akk + i * A_STEP;
        const Entry<T> e = wtab[buf * BK + kk];
        As[kk * lda + c] = load_or_zero(c_in && e.aux, e.p + cK, w);
      }
      if (blockDim.x <= BN) {  // Bs: columns fastest (coalesced along g)
        for (int col = tid; col < BN; col += blockDim.x) {
#pragma unroll
          for (int kk = 0; kk < BK; ++kk) stage_b(col, kk, buf);
        }
      } else {
        for (int kk = tid / BN; kk < BK; kk += blockDim.x / BN) stage_b(tid % BN, kk, buf);
      }
      if (ch + 1 < chunks) fill_table(ch + 1, buf ^ 1);
      __syncthreads();
      if (interior)
        mma_chunk<T, TM, TN, false>(As, lda, Bs, ldb, ty, tx, BM, acc, nullptr, 0, 0);
      else
        mma_chunk<T, TM, TN, true>(As, lda, Bs, ldb, ty, tx, BM, acc, etab + buf * BK, mb, L_out);
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const long long ci = c0 + half_offset(ty, i, TM / 2, BM);
      if (ci >= C_in_g) continue;
      const long long row = (n * C_in + gr * C_in_g + ci) * L + rho - padding;  // + stride*m: j in [0, L)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const long long m = mb + half_offset(tx, j, TN / 2, BN);
        if (m <= m_hi) dx[row + stride * m] = acc[i][j];
      }
    }
  }
}

// Weight and bias gradient partials, in one of two orientations (CO_ROWS picks the one whose tiles waste
// less: gpu/cupy/layer_gemm.py param_orientation). Tile (split s, group gr, tile rt of r, tile ct of co):
// r = c*K + t < R = C_in_g*K, co < C_out_g; reduction over the flat positions p = n*L_out + l in
// [s*chunk, min((s+1)*chunk, N*L_out)) in steps of BK, in order, of
//   X[kk][r] = xpad[n, gr*C_in_g + c, l*stride + t*dilation]        G[kk][co] = g[n, gr*C_out_g + co, l]
// CO_ROWS = 0: As = X (rows r), Bs = G (columns co), partial[s*cols + r*C_out + gr*C_out_g + co]
// CO_ROWS = 1: As = G (rows co), Bs = X (columns r), partial[s*cols + (gr*C_out_g + co)*R + r]
// (the column index fastest: coalesced stores), and with has_db, by the tiles of r = 0:
//   partial[s*cols + R*C_out + gr*C_out_g + co] = sum_p G[kk][co]
// A padded position stages a zero that is multiplied (g * 0), as in the reference; positions past the
// chunk stage zeros in both operands. Table rtab[r] = (c*L, t*dilation - padding) per tile; position
// tables xtab[kk] = (x at (n, gr*C_in_g, 0), l*stride) and gtab[kk] = (g at (n, gr*C_out_g + co0, l),
// valid) per step, filled one chunk ahead.
template <class T, int TM, int TN, int CO_ROWS, int MAXB>
__global__ void __launch_bounds__(MAXB)
    layer_gemm_param_partials(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ partial,
                              long long N, long long C_in, long long L, long long C_out, long long K,
                              long long L_out, long long stride, long long padding, long long dilation,
                              long long groups, long long chunk, long long splits, long long cols, int has_db) {
  constexpr int BN = TX * TN, ldb = BN + PAD, DBQ = (BN + 31) / 32, A_PER = BK * TM / TX;
  const int tid = threadIdx.x, ty = tid / TX, tx = tid % TX, BM = (blockDim.x / TX) * TM, lda = BM + PAD;
  T* As = dynamic_shared<T>();
  T* Bs = As + BK * lda;
  Entry<T>* xtab = reinterpret_cast<Entry<T>*>(Bs + BK * ldb);  // [2][BK]
  Entry<T>* gtab = xtab + 2 * BK;                                 // [2][BK]
  Offset* rtab = reinterpret_cast<Offset*>(gtab + 2 * BK);       // [RW]
  T* Xs = CO_ROWS ? Bs : As;
  T* Gs = CO_ROWS ? As : Bs;
  const int ldx = CO_ROWS ? ldb : lda, ldg = CO_ROWS ? lda : ldb;
  const int RW = CO_ROWS ? BN : BM, CW = CO_ROWS ? BM : BN;  // tile widths along r and co
  const long long C_in_g = C_in / groups, C_out_g = C_out / groups, R = C_in_g * K, P = N * L_out;
  const long long r_tiles = (R + RW - 1) / RW, co_tiles = (C_out_g + CW - 1) / CW;
  const long long tiles = splits * groups * r_tiles * co_tiles;
  const int Li = int(L), kk = tid % BK, row0 = tid / BK, step = blockDim.x / BK;  // this thread's position kk
  const long long lq = BK / L_out, lr = BK % L_out;
  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    long long rest = tile;
    const long long ct = rest % co_tiles;
    rest /= co_tiles;
    const long long rt = rest % r_tiles;
    rest /= r_tiles;
    const long long gr = rest % groups, s = rest / groups;
    const long long r0 = rt * RW, co0 = ct * CW, p0 = s * chunk, p1 = min(p0 + chunk, P);
    const int steps = int((p1 - p0 + BK - 1) / BK), co_in = int(min((long long)CW, C_out_g - co0));
    const bool db_tile = has_db && rt == 0;
    for (int row = tid; row < RW; row += blockDim.x) {
      const long long r = r0 + row, c = r / K;
      rtab[row] = r < R ? Offset{c * L, int((r - c * K) * dilation - padding), 0} : Offset{0, FAR, 0};
    }
    long long n = 0, l = 0;  // (n, l) = divmod(p, L_out) of this thread's p, one step further per call
    auto fill_table = [&](int st, int buf) {
      if (tid < BK) {
        const long long p = p0 + (long long)st * BK + tid;
        if (st == 0) {
          n = p / L_out;
          l = p - n * L_out;
        } else {
          n += lq;
          l += lr;
          if (l >= L_out) {
            l -= L_out;
            ++n;
          }
        }
        if (p < p1) {
          xtab[buf * BK + tid] = Entry<T>{x + (n * C_in + gr * C_in_g) * L, int(l * stride), 0};
          gtab[buf * BK + tid] = Entry<T>{g + (n * C_out + gr * C_out_g + co0) * L_out + l, 0, 1};
        } else {
          xtab[buf * BK + tid] = Entry<T>{x, FAR, 0};
          gtab[buf * BK + tid] = Entry<T>{g, 0, 0};
        }
      }
    };
    T acc[TM][TN], dbacc[DBQ];
    zero_acc(acc);
#pragma unroll
    for (int q = 0; q < DBQ; ++q) dbacc[q] = T(0);
    fill_table(0, 0);
    __syncthreads();
    for (int st = 0; st < steps; ++st) {
      const int buf = st & 1;
      const Entry<T> xe = xtab[buf * BK + kk], ge = gtab[buf * BK + kk];
      auto stage_x = [&](int row) {  // positions fastest (coalesced along x)
        const Offset re = rtab[row];
        const int pos = xe.pos + re.pos;
        Xs[kk * ldx + row] = load_or_zero((unsigned)pos < (unsigned)Li, xe.p + re.off + pos, g);
      };
      const T* src = ge.p + (long long)row0 * L_out;  // positions fastest (coalesced along g)
      const long long sstep = (long long)step * L_out;
      if constexpr (CO_ROWS) {
#pragma unroll
        for (int i = 0; i < A_PER; ++i) {
          const int col = row0 + i * step;
          Gs[kk * ldg + col] = (ge.aux && col < co_in) ? __ldg(src + i * sstep) : T(0);
        }
#pragma unroll 4
        for (int row = row0; row < RW; row += step) stage_x(row);
      } else {
#pragma unroll
        for (int i = 0; i < A_PER; ++i) stage_x(row0 + i * step);
#pragma unroll 4
        for (int col = row0; col < CW; col += step, src += sstep)
          Gs[kk * ldg + col] = (ge.aux && col < co_in) ? __ldg(src) : T(0);
      }
      if (st + 1 < steps) fill_table(st + 1, buf ^ 1);
      __syncthreads();
      mma_chunk<T, TM, TN, false>(As, lda, Bs, ldb, ty, tx, BM, acc, nullptr, 0, 0);
      if (db_tile) {
#pragma unroll
        for (int q = 0; q < DBQ; ++q) {
          const int col = tid + q * int(blockDim.x);
          if (col < CW)
            for (int k = 0; k < BK; ++k) dbacc[q] += Gs[k * ldg + col];
        }
      }
      __syncthreads();
    }
    T* out = partial + s * cols;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const long long a = half_offset(ty, i, TM / 2, BM);
      if (a >= (CO_ROWS ? co_in : R - r0)) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const long long b = half_offset(tx, j, TN / 2, BN);
        if (CO_ROWS) {
          if (r0 + b < R) out[(gr * C_out_g + co0 + a) * R + r0 + b] = acc[i][j];
        } else {
          if (b < co_in) out[(r0 + a) * C_out + gr * C_out_g + co0 + b] = acc[i][j];
        }
      }
    }
    if (db_tile) {
#pragma unroll
      for (int q = 0; q < DBQ; ++q) {
        const int col = tid + q * int(blockDim.x);
        if (col < CW && col < co_in) out[R * C_out + gr * C_out_g + co0 + col] = dbacc[q];
      }
    }
  }
}

// dw and db from the partials, one thread per column col < cols, the splits added in order s = 0, 1, ...
// (no splits: zeros): acc = sum_s partial[s*cols + col], then for col < R*C_out dw[co, r] = acc with
// col = r*C_out + co (co_major = 0) or col = co*R + r (co_major = 1, dw's own order), else db[col - R*C_out].
// The loads run ahead of the adds (unrolled); the order of the adds stays fixed.
template <class T>
__global__ void layer_gemm_sum_splits(const T* __restrict__ partial, long long splits, long long R, long long C_out,
                                      long long cols, int co_major, T* __restrict__ dw, T* __restrict__ db) {
  const long long step = (long long)gridDim.x * blockDim.x;
  for (long long col = (long long)blockIdx.x * blockDim.x + threadIdx.x; col < cols; col += step) {
    T acc = T(0);
#pragma unroll 8
    for (long long s = 0; s < splits; ++s) acc += partial[s * cols + col];
    if (col >= R * C_out) {
      db[col - R * C_out] = acc;
    } else if (co_major) {
      dw[col] = acc;
    } else {
      const long long r = col / C_out;
      dw[(col - r * C_out) * R + r] = acc;
    }
  }
}
