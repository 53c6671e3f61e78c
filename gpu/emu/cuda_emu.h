// cuda_emu.h: the CUDA C surface that lets an unmodified .cu file compile with g++ >= 12
// (-std=c++20 -fno-extern-tls-init) and run on the emulator runtime (runtime.cpp).
//
// __shared__ becomes thread_local: a block owns one OS thread while it runs, and its CUDA threads
// are fibers on that thread. threadIdx and friends read the runtime's thread-local state, which the
// scheduler updates on every switch. Barriers and warp intrinsics record their call site (a
// defaulted std::source_location) and hand control back to the scheduler.
#pragma once

#include <cmath>
#include <cstdio>
#include <type_traits>
#include <utility>

#include "abi.h"

#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __shared__ thread_local
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

#define threadIdx (static_cast<const uint3&>(__emu_tls.tid))
#define blockIdx (static_cast<const uint3&>(__emu_tls.bid))
#define blockDim (dim3(__emu_tls.bdim))
#define gridDim (dim3(__emu_tls.gdim))
constexpr int warpSize = 32;

#define EMU_VECTOR2(T, N, A) \
  struct __attribute__((aligned(A))) N { T x, y; }; \
  inline N make_##N(T x, T y) { return {x, y}; }
#define EMU_VECTOR4(T, N, A) \
  struct __attribute__((aligned(A))) N { T x, y, z, w; }; \
  inline N make_##N(T x, T y, T z, T w) { return {x, y, z, w}; }
EMU_VECTOR2(float, float2, 8)
EMU_VECTOR4(float, float4, 16)
EMU_VECTOR2(double, double2, 16)
EMU_VECTOR2(int, int2, 8)
EMU_VECTOR4(int, int4, 16)
#undef EMU_VECTOR2
#undef EMU_VECTOR4

// ---------------------------------------------------------------------------------------------
// Barriers and warp intrinsics.

using emu_site = std::source_location;
#define EMU_HERE const emu_site& loc = emu_site::current()

inline void __syncthreads(EMU_HERE) { __emu_block_sync(cuda_emu::SYNCTHREADS, 0, loc); }
inline int __syncthreads_count(int pred, EMU_HERE) {
  return __emu_block_sync(cuda_emu::SYNC_COUNT, pred, loc);
}
inline int __syncthreads_and(int pred, EMU_HERE) { return __emu_block_sync(cuda_emu::SYNC_AND, pred, loc); }
inline int __syncthreads_or(int pred, EMU_HERE) { return __emu_block_sync(cuda_emu::SYNC_OR, pred, loc); }
inline void __syncwarp(unsigned mask = 0xffffffffu, EMU_HERE) {
  __emu_warp_sync(cuda_emu::SYNCWARP, mask, 0, 0, warpSize, loc);
}
inline unsigned __ballot_sync(unsigned mask, int pred, EMU_HERE) {
  return unsigned(__emu_warp_sync(cuda_emu::BALLOT, mask, pred != 0, 0, warpSize, loc));
}
inline int __any_sync(unsigned mask, int pred, EMU_HERE) {
  return int(__emu_warp_sync(cuda_emu::ANY, mask, pred != 0, 0, warpSize, loc));
}
inline int __all_sync(unsigned mask, int pred, EMU_HERE) {
  return int(__emu_warp_sync(cuda_emu::ALL, mask, pred != 0, 0, warpSize, loc));
}

namespace cuda_emu {
template <class T> T shuffle(Op op, unsigned mask, T var, int arg, int width, const emu_site& loc) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle: values of at most 8 bytes");
  unsigned long long bits = 0;
  __builtin_memcpy(&bits, &var, sizeof(T));
  bits = __emu_warp_sync(op, mask, bits, arg, width, loc);
  __builtin_memcpy(&var, &bits, sizeof(T));
  return var;
}
}  // namespace cuda_emu

template <class T> T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize, EMU_HERE) {
  return cuda_emu::shuffle(cuda_emu::SHFL_IDX, mask, var, src_lane, width, loc);
}
template <class T> T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, EMU_HERE) {
  return cuda_emu::shuffle(cuda_emu::SHFL_UP, mask, var, int(delta), width, loc);
}
template <class T> T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, EMU_HERE) {
  return cuda_emu::shuffle(cuda_emu::SHFL_DOWN, mask, var, int(delta), width, loc);
}
template <class T> T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize, EMU_HERE) {
  return cuda_emu::shuffle(cuda_emu::SHFL_XOR, mask, var, lane_mask, width, loc);
}

[[noreturn]] inline void __trap(EMU_HERE) { __emu_trap("__trap()", loc); }
#undef assert
#define assert(c) ((c) ? void(0) : __emu_trap("assertion '" #c "' failed", emu_site::current()))
#undef EMU_HERE

// ---------------------------------------------------------------------------------------------
// Atomics (relaxed, as in CUDA), fences, loads, math.

namespace cuda_emu {
template <class T, class F> T atomic_update(T* p, F f) {  // compare-and-swap loop on the bits
  T old, next;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  do next = f(old);
  while (!__atomic_compare_exchange(p, &old, &next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return old;
}
}  // namespace cuda_emu

#define EMU_ATOMIC_INT(T) \
  inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); } \
  inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); } \
  inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); } \
  inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); } \
  inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); } \
  inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); } \
  inline T atomicMin(T* p, T v) { return cuda_emu::atomic_update(p, [v](T o) { return v < o ? v : o; }); } \
  inline T atomicMax(T* p, T v) { return cuda_emu::atomic_update(p, [v](T o) { return v > o ? v : o; }); } \
  inline T atomicCAS(T* p, T expected, T desired) { \
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
    return expected; \
  }
EMU_ATOMIC_INT(int)
EMU_ATOMIC_INT(unsigned)
EMU_ATOMIC_INT(unsigned long long)
#undef EMU_ATOMIC_INT
inline float atomicAdd(float* p, float v) {
  return cuda_emu::atomic_update(p, [v](float o) { return o + v; });
}
inline double atomicAdd(double* p, double v) {
  return cuda_emu::atomic_update(p, [v](double o) { return o + v; });
}
inline float atomicExch(float* p, float v) {
  float old;
  __atomic_exchange(p, &v, &old, __ATOMIC_RELAXED);
  return old;
}

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <class T> T __ldg(const T* p) { return *p; }

template <class A, class B> std::common_type_t<A, B> min(A a, B b) {
  using T = std::common_type_t<A, B>;
  return T(b) < T(a) ? T(b) : T(a);
}
template <class A, class B> std::common_type_t<A, B> max(A a, B b) {
  using T = std::common_type_t<A, B>;
  return T(a) < T(b) ? T(b) : T(a);
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int __float_as_int(float x) { int i; __builtin_memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; __builtin_memcpy(&x, &i, 4); return x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x ? __builtin_clz(unsigned(x)) : 32; }

// ---------------------------------------------------------------------------------------------
// Launch wrappers (gpu/emu/__init__.py generates one per name expression): kernel parameters are
// unpacked from CuPy-style `void** args`, and reflected as "const float*,float*,long long".

namespace cuda_emu {
inline char* put(char* p, const char* s) {
  while (*s) *p++ = *s++;
  *p = 0;
  return p;
}

template <class T> void put_type(char*& p) {
  if constexpr (std::is_pointer_v<T>) {
    using E = std::remove_pointer_t<T>;
    static_assert(!std::is_pointer_v<E>, "emulator: pointer-to-pointer kernel parameters are not supported");
    if constexpr (std::is_const_v<E>) p = put(p, "const ");
    put_type<std::remove_cv_t<E>>(p);
    p = put(p, "*");
  }
#define EMU_NAME(U) else if constexpr (std::is_same_v<T, U>) p = put(p, #U);
  EMU_NAME(void) EMU_NAME(bool) EMU_NAME(char) EMU_NAME(signed char) EMU_NAME(unsigned char)
  EMU_NAME(short) EMU_NAME(unsigned short) EMU_NAME(int) EMU_NAME(unsigned int) EMU_NAME(long)
  EMU_NAME(unsigned long) EMU_NAME(long long) EMU_NAME(unsigned long long) EMU_NAME(float) EMU_NAME(double)
#undef EMU_NAME
  else static_assert(sizeof(T) == 0, "emulator: unsupported kernel parameter type");
}

template <class... A> const char* signature(void (*)(A...)) {
  static char text[64 * (sizeof...(A) + 1)];
  char* p = text;
  ((p = p == text ? p : put(p, ","), put_type<A>(p)), ...);
  return text;
}

template <class... A> void invoke(void (*kernel)(A...), void** args) {
  [&]<unsigned long... I>(std::integer_sequence<unsigned long, I...>) {
    kernel(*static_cast<A*>(args[I])...);
  }(std::make_integer_sequence<unsigned long, sizeof...(A)>{});
}
}  // namespace cuda_emu

// An address in this module's thread-local block, which holds its static __shared__ variables.
extern "C" __attribute__((visibility("default"))) void* __emu_module_tls() {
  static thread_local char probe;
  return &probe;
}
