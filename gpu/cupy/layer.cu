// The batched multi-channel conv1d layer (kernels/layer.py) for the `cupy` backend. Math and shapes:
// kernels/layer.py.
//
//   x (N, C_in, L)   w (C_out, C_in/groups, K)   b (C_out) or empty   y, g (N, C_out, L_out)
//
// Variants (registered under these names, never renumbered):
//
//   direct  one thread per output element (64-bit flat index, grid-stride): y and dx as gathers (no
//           atomics, no workspace); dw and db as chunk partials in a workspace, summed in a fixed order
//           by sum_columns of gpu/cupy/correlate.cu (deterministic, and a grid that fills the GPU even when
//           dw has few elements)
//
// Zero padding multiplies like real zeros, as in torch and the reference: a padded position contributes
// w * 0 to y and g * 0 to dw, which is 0 for finite values and NaN for an Inf or NaN (the loops over the
// padded taps and positions run only at the edges). dx has no padded terms.
//
// The instantiations are listed by the launcher (gpu/cupy/layer.py).

#include "common.cuh"

// floor(a / b) for b > 0 (C++ division truncates toward zero)
__device__ __forceinline__ long long floor_div(long long a, long long b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// [*lo, *hi): the i < count with 0 <= start + i*step < L (step >= 1), i.e. the indices that land on real
// input, not on the padding. The taps of output l: real_range(l*stride - padding, dilation, K, L); the
// outputs of tap t: real_range(t*dilation - padding, stride, L_out, L).
__device__ __forceinline__ void real_range(long long start, long long step, long long count, long long L,
                                           long long* lo, long long* hi) {
  *lo = min(count, max(0LL, -floor_div(start, step)));  // ceil(-start / step), in [0, count]
  *hi = max(*lo, min(count, floor_div(L - 1 - start, step) + 1));
}

// y[n, co, l] = b[co] + sum_{c, t < K} w[co, c, t] xpad[n, ci0 + c, l*stride - padding + t*dilation],
// one thread per y element i = (n*C_out + co)*L_out + l; a tap on the padding multiplies a zero (the
// taps [t_lo, t_hi) read x, the others the padding).
template <class T>
__global__ void layer_forward(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                              T* __restrict__ y, long long N, long long C_in, long long L, long long C_out,
                              long long K, long long L_out, long long stride, long long padding,
                              long long dilation, long long groups, int has_bias) {
  const long long C_in_g = C_in / groups, C_out_g = C_out / groups, total = N * C_out * L_out;
  const long long step = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    const long long l = i % L_out, r = i / L_out, co = r % C_out, n = r / C_out;
    const long long ci0 = (co / C_out_g) * C_in_g, base = l * stride - padding;
    long long t_lo, t_hi;
    real_range(base, dilation, K, L, &t_lo, &t_hi);
    T acc = T(0);
    for (long long c = 0; c < C_in_g; ++c) {
      const long long xr = (n * C_in + ci0 + c) * L + base;  // x index of tap 0 (maybe in the padding)
      const T* wr = w + (co * C_in_g + c) * K;
      for (long long t = t_lo; t < t_hi; ++t) acc += wr[t] * x[xr + t * dilation];
#pragma unroll 1
      for (long long t = 0; t < t_lo; ++t) acc += wr[t] * T(0);  // taps on the padding (edges only)
#pragma unroll 1
      for (long long t = t_hi; t < K; ++t) acc += wr[t] * T(0);
    }
    y[i] = has_bias ? acc + b[co] : acc;
  }
}

// dx[n, ci, j] = sum_{co in G(ci), t} g[n, co, (q - t*dilation)/stride] w[co, c, t], q = j + padding,
// over the t with q - t*dilation a multiple of stride in [0, (L_out-1)*stride]; the first such t is
// searched, the next ones are t_step = stride / gcd(stride, dilation) apart. A gather: no atomics.
template <class T>
__global__ void layer_input_grad(const T* __restrict__ w, const T* __restrict__ g, T* __restrict__ dx,
                                 long long N, long long C_in, long long L, long long C_out, long long K,
                                 long long L_out, long long stride, long long padding, long long dilation,
                                 long long groups, long long t_step) {
  const long long C_in_g = C_in / groups, C_out_g = C_out / groups, total = N * C_in * L;
  const long long step = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    const long long j = i % L, r = i / L, ci = r % C_in, n = r / C_in;
    const long long co0 = (ci / C_in_g) * C_out_g, c = ci % C_in_g, q = j + padding;
    const long long t_hi = min(K, floor_div(q, dilation) + 1);
    long long t0 = max(0LL, -floor_div((L_out - 1) * stride - q, dilation));
    while (t0 < t_hi && (q - t0 * dilation) % stride != 0) ++t0;
    T acc = T(0);
    for (long long co = co0; co < co0 + C_out_g; ++co) {
      const T* gr = g + (n * C_out + co) * L_out;
      const T* wr = w + (co * C_in_g + c) * K;
      for (long long t = t0; t < t_hi; t += t_step) acc += gr[(q - t * dilation) / stride] * wr[t];
    }
    dx[i] = acc;
  }
}

// partial[s*E + e], one thread per (chunk s, column e): the chunk's part of
//   dw column e = (co*C_in_g + c)*K + t < E_w:  sum g[n, co, l] x[n, ci, l*stride + t*dilation - padding]
//   db column e = E_w + co:                     sum g[n, co, l]
// over the flat positions i = n*L_out + l in [s*chunk, (s+1)*chunk), in order of i; for dw the l of
// real_range (tap t on real input) multiply x, the others the zero padding (g * 0).
template <class T>
__global__ void layer_param_partials(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ partial,
                                     long long N, long long C_in, long long L, long long C_out, long long K,
                                     long long L_out, long long stride, long long padding, long long dilation,
                                     long long groups, long long chunk, long long splits, long long E) {
  const long long C_in_g = C_in / groups, C_out_g = C_out / groups;
  const long long E_w = C_out * C_in_g * K, NL = N * L_out;
  const long long step = (long long)gridDim.x * blockDim.x;
  for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < splits * E; k += step) {
    const long long s = k / E, e = k % E;
    long long co, ci = 0, lo = 0, hi = L_out, shift = 0;
    const bool is_w = e < E_w;
    if (is_w) {
      const long long t = e % K, r = e / K, c = r % C_in_g;
      co = r / C_in_g;
      ci = (co / C_out_g) * C_in_g + c;
      real_range(t * dilation - padding, stride, L_out, L, &lo, &hi);
      shift = t * dilation - padding;
    } else {
      co = e - E_w;
    }
    T acc = T(0);
    const long long end = min((s + 1) * chunk, NL);
    long long i = s * chunk;
    while (i < end) {  // row by row: the chunk's part of g[n, co, :]
      const long long n = i / L_out, l0 = i - n * L_out, l1 = min(L_out, l0 + end - i);
      const T* gr = g + (n * C_out + co) * L_out;
      if (is_w) {
        const long long xr = (n * C_in + ci) * L + shift;  // x index of l = 0 (maybe in the padding)
        const long long lend = min(l1, hi);
        for (long long l = max(l0, lo); l < lend; ++l) acc += gr[l] * x[xr + l * stride];
#pragma unroll 1
        for (long long l = l0; l < min(l1, lo); ++l) acc += gr[l] * T(0);  // taps on the padding
#pragma unroll 1
        for (long long l = max(l0, hi); l < l1; ++l) acc += gr[l] * T(0);
      } else {
        for (long long l = l0; l < l1; ++l) acc += gr[l];
      }
      i += l1 - l0;
    }
    partial[k] = acc;
  }
}
