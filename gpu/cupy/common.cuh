// What every .cu file of the cupy backend shares, declared once: the block's dynamic shared memory, the
// 16-byte vector of an element type, the correlation engine's epilogue and the periodic index.
// The .cu files include it as "common.cuh" (every compile path passes -I for this folder:
// gpu/cupy/tunables.py compile_options), and get the EPI_* numbers with -D from there too.
#pragma once

#if !defined(EPI_NONE) || !defined(EPI_RELU) || !defined(EPI_GATE)
#error "the CUDA C kernels need their constants as -D options: gpu/cupy/tunables.py (DEFINES) lists them"
#endif

// The block's dynamic shared memory, 16-byte aligned, as an array of T.
template <class T>
__device__ __forceinline__ T* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char dynamic_smem[];
  return reinterpret_cast<T*>(dynamic_smem);
}

// The 16-byte vector of T: four floats or two doubles in one load or store.
template <class T> struct Vec16;
template <> struct Vec16<float> { typedef float4 type; };
template <> struct Vec16<double> { typedef double2 type; };

// The correlation engine's epilogue of output o: EPI_NONE v, EPI_RELU max(0, v) (NaN stays NaN),
// EPI_GATE gate[o] where v > 0, else 0.
template <class T>
__device__ __forceinline__ T finish(T v, long long o, int epilogue, const T* __restrict__ gate) {
  if (epilogue == EPI_RELU) return v <= T(0) ? T(0) : v;
  if (epilogue == EPI_GATE) return v > T(0) ? gate[o] : T(0);
  return v;
}

// t mod N in [0, N), for any sign of t (C++ % truncates toward zero).
__device__ __forceinline__ long long wrap(long long t, long long N) {
  long long r = t % N;
  return r < 0 ? r + N : r;
}
