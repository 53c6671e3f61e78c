// runtime.cpp: the emulator's scheduler, built once into a shared library that kernel modules link.
//
// A launch spreads the blocks over a few OS threads (workers). A worker runs one block at a time:
// each CUDA thread is a fiber with its own 64 KiB stack (x86-64: a hand-written context switch of
// the callee-saved registers and rsp; ucontext elsewhere, or with -DCUDA_EMU_UCONTEXT, ~15x slower).
// In a phase every ready fiber takes one turn, in forward, reverse or (seeded, reshuffled every
// phase) random order: it runs until it waits at a barrier or exits, then switches straight to the
// next fiber. After the last turn, `settle` completes the warp intrinsics and __syncthreads whose
// threads have all arrived, or reports the error: in strict mode, anything CUDA leaves undefined
// that we can see.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <link.h>
#include <sys/mman.h>
#include <unistd.h>
#if !defined(__x86_64__) || defined(CUDA_EMU_UCONTEXT)
#include <ucontext.h>
#endif
#include "abi.h"

// AddressSanitizer's fiber and poisoning interface: null unless the process has ASan loaded
// (LD_PRELOAD), so one runtime serves kernel modules built with and without -fsanitize=address.
extern "C" {
__attribute__((weak)) void __sanitizer_start_switch_fiber(void** fake_stack, const void* bottom, size_t size);
__attribute__((weak)) void __sanitizer_finish_switch_fiber(void* fake_stack, const void** bottom_old,
                                                           size_t* size_old);
__attribute__((weak)) void __asan_poison_memory_region(const volatile void* addr, size_t size);
__attribute__((weak)) void __asan_unpoison_memory_region(const volatile void* addr, size_t size);
}

thread_local cuda_emu::Tls __emu_tls;
alignas(16) thread_local unsigned char __emu_dyn_smem[cuda_emu::kMaxDynamicShared];

namespace cuda_emu {
namespace {

// ---------------------------------------------------------------------------------------------
// Fibers and their stacks.

[[noreturn]] void fiber_main();

#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
extern "C" void emu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .p2align 4
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch
)");

struct Context { void* sp; };
void context_init(Context& c, char* stack, size_t size) {
  void** sp = reinterpret_cast<void**>(stack + size);  // 16-byte aligned top
  *--sp = nullptr;                                     // fiber_main's return address: never used
  *--sp = reinterpret_cast<void*>(&fiber_main);        // where emu_switch returns to
  for (int i = 0; i < 6; ++i) *--sp = nullptr;         // rbp rbx r12-r15
  c.sp = sp;
}
inline void context_switch(Context& from, Context& to) { emu_switch(&from.sp, to.sp); }
#else
struct Context { ucontext_t uc; };
void context_init(Context& c, char* stack, size_t size) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, fiber_main, 0);
}
inline void context_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

constexpr unsigned kMaxThreads = 1024;
const bool kAsan = __sanitizer_start_switch_fiber != nullptr;
const size_t kStack = kAsan ? 256 << 10 : 64 << 10;  // ASan frames carry redzones

// Switches stacks, telling ASan about it (see sanitizer/common_interface_defs.h).
inline void switch_to(Context& from, Context& to, const void* stack, size_t size) {
  if (!kAsan) return context_switch(from, to);
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, stack, size);
  context_switch(from, to);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
}

// An arena holds stacks for 1024 fibers, each above a PROT_NONE guard page. Reused across launches.
std::mutex arena_mutex;
std::vector<char*> arena_pool;
size_t arena_stride() {
  static const size_t stride = kStack + size_t(sysconf(_SC_PAGESIZE));
  return stride;
}

char* arena_get() {
  {
    std::lock_guard<std::mutex> lock(arena_mutex);
    if (!arena_pool.empty()) {
      char* a = arena_pool.back();
      arena_pool.pop_back();
      return a;
    }
  }
  size_t stride = arena_stride();
  void* p = mmap(nullptr, stride * kMaxThreads, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  char* a = static_cast<char*>(p);
  for (unsigned i = 0; i < kMaxThreads; ++i) mprotect(a + i * stride, stride - kStack, PROT_NONE);
  return a;
}

void arena_put(char* a) {
  std::lock_guard<std::mutex> lock(arena_mutex);
  arena_pool.push_back(a);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Scheduler state.

enum class State : unsigned char { ready, waiting, done, trapped };
enum Order { FORWARD, REVERSE, RANDOM };

const char* const op_name[] = {
    "__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or",
    "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
    "__ballot_sync", "__any_sync", "__all_sync"};
inline bool block_wide(Op op) { return op < SYNCWARP; }

struct Fiber {
  Context ctx;
  char* stack;               // lowest address of its kStack bytes
  uint3 tid;
  State state;
  Op op;                     // the barrier it waits at
  unsigned mask;             // warp intrinsics: member mask
  int arg, width;            // shuffles: lane, delta or lane mask; and width
  uint64_t in, out;          // value contributed, value returned
  std::source_location loc;  // where it waits or trapped
  const char* trap;          // why it trapped
};

struct Launch {
  void (*thunk)(void**);
  void* (*module_tls)();
  void** args;
  dim3 grid, block;
  size_t shared_bytes;
  int order;
  uint64_t seed;
  bool strict;
  uint64_t nblocks;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::string error{};

  void fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex);
    if (error.empty()) error = message;
    failed = true;
  }
};

struct Range { unsigned char* p; size_t n; };

struct Worker {
  Launch& L;
  Tls& tls;                           // this OS thread's __emu_tls
  Context sched{};
  const void* sched_stack = nullptr;  // ASan only: this OS thread's stack
  size_t sched_stack_size = 0;
  std::vector<Fiber> fibers{};
  std::vector<unsigned> order{};      // the phase's order of turns
  size_t next = 0;                    // position in `order` of the next turn
  Range statics{};                    // the kernel module's static __shared__ variables
  uint64_t rng = 0;
  char* arena = nullptr;
  std::string error{};
};

// ---------------------------------------------------------------------------------------------
// Fiber side.

namespace {

// The phase's next ready fiber, or null when every fiber has had its turn.
Fiber* next_ready(Worker& w) {
  while (w.next < w.order.size()) {
    Fiber& f = w.fibers[w.order[w.next++]];
    if (f.state == State::ready) return &f;
  }
  return nullptr;
}

void switch_to_fiber(Worker& w, Context& from, Fiber& f) {
  w.tls.cur = &f;
  w.tls.tid = f.tid;
  switch_to(from, f.ctx, f.stack, kStack);
}

// Fiber `f` waits, exited or trapped: on to the next fiber of the phase, or back to the scheduler.
void end_turn(Worker& w, Fiber& f) {
  if (Fiber* next = next_ready(w)) switch_to_fiber(w, f.ctx, *next);
  else switch_to(f.ctx, w.sched, w.sched_stack, w.sched_stack_size);
}

void wait(Fiber& f, Op op, const std::source_location& loc) {
  f.op = op;
  f.loc = loc;
  f.state = State::waiting;
  end_turn(*__emu_tls.worker, f);
}

[[noreturn]] void fiber_main() {
  Worker& w = *__emu_tls.worker;
  Fiber& f = *__emu_tls.cur;
  if (kAsan && !w.sched_stack)  // the first fiber a worker enters comes from the scheduler: learn its stack
    __sanitizer_finish_switch_fiber(nullptr, &w.sched_stack, &w.sched_stack_size);
  else if (kAsan)
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
  w.L.thunk(w.L.args);
  f.state = State::done;
  end_turn(w, f);
  __builtin_unreachable();
}

// ---------------------------------------------------------------------------------------------
// Settling barriers between phases.

std::string format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}
std::string who(const Fiber& f) {
  return format("thread (%u,%u,%u) of block (%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z,
                __emu_tls.bid.x, __emu_tls.bid.y, __emu_tls.bid.z);
}
std::string where(const Fiber& f) {
  return format("%s at %s:%u", f.state == State::trapped ? f.trap : op_name[f.op], f.loc.file_name(),
                unsigned(f.loc.line()));
}
bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || std::strcmp(a.file_name(), b.file_name()) == 0);
}

// "N thread(s) wait at X (e.g. thread ...)" for each distinct place: explains a deadlock.
std::string describe(const Worker& w) {
  std::vector<std::pair<const Fiber*, unsigned>> groups;
  unsigned exited = 0;
  for (const Fiber& f : w.fibers) {
    if (f.state == State::done) {
      ++exited;
      continue;
    }
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&](auto& p) { return p.first->op == f.op && same_site(p.first->loc, f.loc); });
    if (g == groups.end()) groups.emplace_back(&f, 1u);
    else ++g->second;
  }
  std::string s;
  for (auto& [f, n] : groups)
    s += format("%u thread(s) wait at ", n) + where(*f) +
         format(" (e.g. thread (%u,%u,%u)); ", f->tid.x, f->tid.y, f->tid.z);
  return s + format("%u thread(s) exited", exited);
}

// PTX shfl.sync: the lane that `lane` reads; itself when the source lies outside its segment.
unsigned source_lane(Op op, unsigned lane, int b, int width) {
  unsigned seg = 32u - unsigned(width), bv = unsigned(b) & 31u;
  int lo = int(lane & seg), hi = int((lane & seg) | (31u & ~seg)), j = 0;
  bool inside = false;
  switch (op) {
    case SHFL_UP: j = int(lane) - int(bv), inside = j >= lo; break;
    case SHFL_DOWN: j = int(lane + bv), inside = j <= hi; break;
    case SHFL_XOR: j = int(lane ^ bv), inside = j <= hi; break;
    default: j = int(unsigned(lo) | (bv & ~seg & 31u)), inside = j <= hi; break;
  }
  return inside ? unsigned(j) : lane;
}

// Completes the warp intrinsic that the lanes in `group` wait at (same op, same mask).
bool complete_warp_op(Worker& w, unsigned base, uint32_t group, uint32_t exists) {
  Fiber* F = &w.fibers[base];
  Op op = F[__builtin_ctz(group)].op;
  uint32_t votes = 0;
  for (uint32_t g = group; g; g &= g - 1) votes |= uint32_t(F[__builtin_ctz(g)].in != 0) << __builtin_ctz(g);
  for (uint32_t g = group; g; g &= g - 1) {
    unsigned l = unsigned(__builtin_ctz(g));
    Fiber& f = F[l];
    if (op == BALLOT) f.out = votes;
    else if (op == ANY) f.out = votes != 0;
    else if (op == ALL) f.out = votes == group;
    else if (op != SYNCWARP) {
      if (f.width < 1 || f.width > 32 || (f.width & (f.width - 1))) {
        w.error = who(f) + ": " + where(f) + format(": width %d is not a power of 2 in [1, 32]", f.width);
        return false;
      }
      unsigned src = source_lane(op, l, f.arg, f.width);
      if (src == l || (group >> src & 1)) f.out = F[src].in;
      else if (!w.L.strict) f.out = ~uint64_t(0);  // undefined: poison
      else {
        const char* why = !(exists >> src & 1) ? "does not exist (partial warp)"
                          : !(f.mask >> src & 1) ? "is not in the mask"
                          : F[src].state == State::done ? "has exited" : "did not take part";
        w.error = who(f) + ": " + where(f) +
                  format(" (mask 0x%08x) reads lane %u, which %s", f.mask, src, why);
        return false;
      }
    }
  }
  for (uint32_t g = group; g; g &= g - 1) F[__builtin_ctz(g)].state = State::ready;
  return true;
}

enum class Settle { progress, finished, failed, stuck };

// Completes every warp intrinsic whose named lanes have all arrived or exited.
Settle settle_warps(Worker& w) {
  unsigned n = unsigned(w.fibers.size());
  bool released = false;
  for (unsigned base = 0; base < n; base += 32) {
    unsigned count = std::min(32u, n - base);
    uint32_t exists = count == 32 ? ~0u : (1u << count) - 1;
    uint32_t at_warp = 0, at_block = 0;
    for (unsigned l = 0; l < count; ++l) {
      const Fiber& f = w.fibers[base + l];
      if (f.state == State::waiting) (block_wide(f.op) ? at_block : at_warp) |= 1u << l;
    }
    for (uint32_t todo = at_warp; todo;) {
      unsigned l = unsigned(__builtin_ctz(todo));
      const Fiber& f = w.fibers[base + l];
      if (!(f.mask >> l & 1)) {
        w.error = who(f) + ": " + where(f) +
                  format(": mask 0x%08x leaves out the calling lane %u", f.mask, l);
        return Settle::failed;
      }
      uint32_t named = f.mask & exists, group = named & at_warp;
      todo &= ~group;
      for (uint32_t g = group; g; g &= g - 1) {
        const Fiber& o = w.fibers[base + unsigned(__builtin_ctz(g))];
        if (o.op != f.op || o.mask != f.mask) {
          w.error = who(f) + ": " + where(f) + format(" (mask 0x%08x) meets ", f.mask) + who(o) + ": " +
                    where(o) + format(" (mask 0x%08x)", o.mask);
          return Settle::failed;
        }
      }
      if (named & at_block) continue;  // a named lane waits at __syncthreads
      if (!complete_warp_op(w, base, group, exists)) return Settle::failed;
      released = true;
    }
  }
  return released ? Settle::progress : Settle::stuck;
}

// Releases the block barrier once every thread that has not exited waits there.
Settle settle_block(Worker& w) {
  const Fiber* first = nullptr;
  const Fiber* exited = nullptr;
  unsigned arrived = 0, votes = 0;
  for (const Fiber& f : w.fibers) {
    if (f.state == State::done) {
      exited = exited ? exited : &f;
      continue;
    }
    if (!block_wide(f.op)) return Settle::stuck;
    first = first ? first : &f;
    if (w.L.strict && (f.op != first->op || !same_site(f.loc, first->loc))) {
      w.error = who(f) + " waits at " + where(f) + " but " + who(*first) + " waits at " + where(*first);
      return Settle::failed;
    }
    ++arrived;
    votes += unsigned(f.in);
  }
  if (w.L.strict && exited) {
    w.error = who(*exited) + format(" exited while %u thread(s) wait at ", arrived) + where(*first);
    return Settle::failed;
  }
  uint64_t out = first->op == SYNC_COUNT ? votes : first->op == SYNC_AND ? votes == arrived : votes != 0;
  for (Fiber& f : w.fibers)
    if (f.state == State::waiting) f.out = out, f.state = State::ready;
  return Settle::progress;
}

Settle settle(Worker& w) {
  unsigned done = 0, at_warp = 0;
  for (const Fiber& f : w.fibers) {
    if (f.state == State::trapped) {
      w.error = who(f) + ": " + where(f);
      return Settle::failed;
    }
    done += f.state == State::done;
    at_warp += f.state == State::waiting && !block_wide(f.op);
  }
  if (done == w.fibers.size()) return Settle::finished;
  Settle s = at_warp ? settle_warps(w) : Settle::stuck;
  if (s == Settle::stuck) s = settle_block(w);
  if (s == Settle::stuck)
    w.error = format("deadlock in block (%u,%u,%u): ", w.tls.bid.x, w.tls.bid.y, w.tls.bid.z) + describe(w);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Running blocks.

uint64_t next_random(uint64_t& s) {  // xorshift64*
  s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
  return s * 0x2545F4914F6CDD1DULL;
}

bool run_block(Worker& w, uint64_t b) {
  const Launch& L = w.L;
  w.tls.bid = {unsigned(b % L.grid.x), unsigned(b / L.grid.x % L.grid.y), unsigned(b / L.grid.x / L.grid.y)};
  std::memset(w.statics.p, 0xFF, w.statics.n);  // uninitialised shared memory reads as NaN
  std::memset(__emu_dyn_smem, 0xFF, L.shared_bytes);
  for (Fiber& f : w.fibers) f.state = State::ready, context_init(f.ctx, f.stack, kStack);
  w.rng = (L.seed ^ (b * 0x9E3779B97F4A7C15ULL)) | 1;
  for (;;) {
    if (L.order == RANDOM)
      for (size_t i = w.order.size(); i > 1; --i) std::swap(w.order[i - 1], w.order[next_random(w.rng) % i]);
    w.next = 0;
    if (Fiber* f = next_ready(w)) switch_to_fiber(w, w.sched, *f);  // the fibers pass the turn on
    switch (settle(w)) {
      case Settle::progress: break;
      case Settle::finished: return true;
      default: return false;
    }
  }
}

// This thread's instance of the thread-local block that contains `probe`.
Range tls_block(void* probe) {
  Range found{static_cast<unsigned char*>(probe), 0};
  dl_iterate_phdr([](dl_phdr_info* info, size_t, void* data) {
    auto& r = *static_cast<Range*>(data);
    auto* base = static_cast<unsigned char*>(info->dlpi_tls_data);
    for (int i = 0; base && i < info->dlpi_phnum; ++i) {
      size_t size = info->dlpi_phdr[i].p_memsz;
      if (info->dlpi_phdr[i].p_type == PT_TLS && r.p >= base && r.p < base + size) {
        r = {base, size};
        return 1;
      }
    }
    return 0;
  }, &found);
  return found;
}

void work(Launch& L) {
  Worker w{L, __emu_tls};
  unsigned n = L.block.x * L.block.y * L.block.z;
  w.arena = arena_get();
  if (!w.arena) return L.fail("cannot map fiber stacks");
  __emu_tls.worker = &w;
  __emu_tls.bdim = {L.block.x, L.block.y, L.block.z};
  __emu_tls.gdim = {L.grid.x, L.grid.y, L.grid.z};
  w.statics = tls_block(L.module_tls());
  w.fibers.resize(n);
  w.order.resize(n);
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = w.fibers[i];
    f.stack = w.arena + (i + 1) * arena_stride() - kStack;
    f.tid = {i % L.block.x, i / L.block.x % L.block.y, i / (L.block.x * L.block.y)};
    w.order[i] = L.order == REVERSE ? n - 1 - i : i;
  }
  if (kAsan) __asan_poison_memory_region(__emu_dyn_smem + L.shared_bytes, kMaxDynamicShared - L.shared_bytes);
  while (!L.failed.load(std::memory_order_relaxed)) {
    uint64_t b = L.next.fetch_add(1);
    if (b >= L.nblocks) break;
    if (!run_block(w, b)) {
      L.fail(w.error);
      break;
    }
  }
  if (kAsan) {
    __asan_unpoison_memory_region(__emu_dyn_smem, kMaxDynamicShared);
    __asan_unpoison_memory_region(w.arena, arena_stride() * n);  // abandoned fibers leave poisoned frames
  }
  arena_put(w.arena);
}

}  // namespace
}  // namespace cuda_emu

// ---------------------------------------------------------------------------------------------
// The ABI (abi.h).

using namespace cuda_emu;

int __emu_block_sync(Op op, int pred, const std::source_location& loc) {
  Fiber& f = *__emu_tls.cur;
  f.in = pred != 0;
  wait(f, op, loc);
  return int(f.out);
}

unsigned long long __emu_warp_sync(Op op, unsigned mask, unsigned long long in, int arg, int width,
                                   const std::source_location& loc) {
  Fiber& f = *__emu_tls.cur;
  f.mask = mask, f.in = in, f.arg = arg, f.width = width;
  wait(f, op, loc);
  return f.out;
}

void __emu_trap(const char* what, const std::source_location& loc) {
  Fiber& f = *__emu_tls.cur;
  Worker& w = *__emu_tls.worker;
  f.trap = what;
  f.loc = loc;
  f.state = State::trapped;
  end_turn(w, f);
  __builtin_unreachable();
}

int __emu_launch(void (*thunk)(void**), void* (*module_tls)(), void** args, const unsigned* grid,
                 const unsigned* block, unsigned long long shared_bytes, int order,
                 unsigned long long seed, int strict, int workers, char* err, unsigned long long err_size) {
  Launch L;
  L.thunk = thunk, L.module_tls = module_tls, L.args = args;
  L.grid = dim3(grid[0], grid[1], grid[2]);
  L.block = dim3(block[0], block[1], block[2]);
  L.shared_bytes = shared_bytes, L.order = order, L.seed = seed, L.strict = strict != 0;
  L.nblocks = uint64_t(grid[0]) * grid[1] * grid[2];
  uint64_t threads = uint64_t(block[0]) * block[1] * block[2];
  if (threads == 0 || threads > kMaxThreads || L.nblocks == 0 || shared_bytes > kMaxDynamicShared) {
    L.fail("invalid launch configuration");
  } else {
    std::vector<std::thread> pool;
    try {
      for (uint64_t i = 0; i < std::min<uint64_t>(uint64_t(std::max(workers, 1)), L.nblocks); ++i)
        pool.emplace_back(work, std::ref(L));
    } catch (const std::exception& e) {
      L.fail(std::string("cannot start worker threads: ") + e.what());
    }
    for (std::thread& t : pool) t.join();
  }
  if (!L.failed) return 0;
  std::snprintf(err, err_size, "%s", L.error.c_str());
  return 1;
}
