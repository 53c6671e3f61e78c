// abi.h: what kernel modules (cuda_emu.h) and the emulator runtime (runtime.cpp) share.
#pragma once

#include <source_location>

struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

namespace cuda_emu {
struct Fiber;
struct Worker;

struct Tls {  // per OS thread, trivially constructible; the scheduler sets `tid` on every switch
  uint3 tid, bid, bdim, gdim;
  Fiber* cur;
  Worker* worker;
};

enum Op : unsigned char {
  SYNCTHREADS, SYNC_COUNT, SYNC_AND, SYNC_OR,                          // block-wide barriers
  SYNCWARP, SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, BALLOT, ANY, ALL,  // warp-wide
};

constexpr unsigned long kMaxDynamicShared = 227 << 10;  // bytes per block on sm_90
}  // namespace cuda_emu

#define EMU_API __attribute__((visibility("default")))

extern "C" {
EMU_API extern thread_local cuda_emu::Tls __emu_tls;
// Every `extern __shared__` array of a kernel module is renamed to this buffer when it is built.
EMU_API extern thread_local unsigned char __emu_dyn_smem[cuda_emu::kMaxDynamicShared];

// Called by the running fiber: wait at a barrier, then return its result.
EMU_API int __emu_block_sync(cuda_emu::Op op, int pred, const std::source_location& loc);
EMU_API unsigned long long __emu_warp_sync(cuda_emu::Op op, unsigned mask, unsigned long long in,
                                           int arg, int width, const std::source_location& loc);
[[noreturn]] EMU_API void __emu_trap(const char* what, const std::source_location& loc);

// Runs `thunk(args)` on every thread of the grid. `module_tls` returns an address inside the kernel
// module's thread-local block (its static __shared__ variables). Returns 0, or 1 with a message in
// `err`. order: 0 forward, 1 reverse, 2 random.
EMU_API int __emu_launch(void (*thunk)(void**), void* (*module_tls)(), void** args,
                         const unsigned* grid, const unsigned* block, unsigned long long shared_bytes,
                         int order, unsigned long long seed, int strict, int workers, char* err,
                         unsigned long long err_size);
}
