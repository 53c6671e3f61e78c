// Negative controls: a tiled 1-D cross-correlation, written correctly and broken four ways, so that
// tests/test_emulator.py can show the emulator catches each bug (and compute-sanitizer on a GPU).
//
//   y[j] = sum_{i<k} x[j+i] w[i],   x: n elements, w: k, y: m = n - k + 1
//
// Launch: grid = ceil(m / B) blocks of B threads, dynamic shared memory (B + k - 1) * sizeof(T).
// Block b loads the tile x[b*B .. b*B + B + k - 2] (B elements plus a k-1 halo) into shared memory,
// waits at a barrier, and thread t computes y[b*B + t] from tile[t .. t + k - 1].
//
//   corr_tiled         correct
//   corr_no_sync       no barrier between loading the tile and reading it: a race between threads
//   corr_early_return  threads past the end of y return before the barrier, and skip their loads
//   corr_no_halo       loads B elements but not the halo: reads uninitialised shared memory
//   corr_oob_read      loads the halo without checking against n: reads past the end of x
//
// name_expressions: corr_tiled<float>, corr_tiled<double>, corr_no_sync<float>
// name_expressions: corr_early_return<float>, corr_no_halo<float>, corr_oob_read<float>

template <class T>
__device__ __forceinline__ T* tile_memory() {
  extern __shared__ __align__(16) unsigned char smem[];
  return reinterpret_cast<T*>(smem);
}

// tile[t] = x[start + t] for t < len (zero past the end of x); the block's threads share the work.
template <class T>
__device__ void load_tile(const T* __restrict__ x, T* tile, long long n, long long start, long long len) {
  for (long long t = threadIdx.x; t < len; t += blockDim.x) tile[t] = start + t < n ? x[start + t] : T(0);
}

// y[j] = sum_{i<k} tile[threadIdx.x + i] w[i]
template <class T>
__device__ void store_dot(const T* tile, const T* __restrict__ w, T* __restrict__ y, long long k,
                          long long j) {
  T acc = 0;
  for (long long i = 0; i < k; ++i) acc += tile[threadIdx.x + i] * w[i];
  y[j] = acc;
}

template <class T>
__global__ void corr_tiled(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                           long long n, long long k) {
  T* tile = tile_memory<T>();
  long long start = (long long)blockIdx.x * blockDim.x, j = start + threadIdx.x;
  load_tile(x, tile, n, start, blockDim.x + k - 1);
  __syncthreads();
  if (j < n - k + 1) store_dot(tile, w, y, k, j);
}

template <class T>
__global__ void corr_no_sync(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                             long long n, long long k) {
  T* tile = tile_memory<T>();
  long long start = (long long)blockIdx.x * blockDim.x, j = start + threadIdx.x;
  load_tile(x, tile, n, start, blockDim.x + k - 1);
  // BUG: no __syncthreads(): tile[threadIdx.x + i] may not be loaded yet
  if (j < n - k + 1) store_dot(tile, w, y, k, j);
}

template <class T>
__global__ void corr_early_return(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                  long long n, long long k) {
  T* tile = tile_memory<T>();
  long long start = (long long)blockIdx.x * blockDim.x, j = start + threadIdx.x;
  if (j >= n - k + 1) return;  // BUG: these threads never reach the barrier nor load their elements
  load_tile(x, tile, n, start, blockDim.x + k - 1);
  __syncthreads();
  store_dot(tile, w, y, k, j);
}

template <class T>
__global__ void corr_no_halo(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                             long long n, long long k) {
  T* tile = tile_memory<T>();
  long long start = (long long)blockIdx.x * blockDim.x, j = start + threadIdx.x;
  load_tile(x, tile, n, start, blockDim.x);  // BUG: should be blockDim.x + k - 1
  __syncthreads();
  if (j < n - k + 1) store_dot(tile, w, y, k, j);
}

template <class T>
__global__ void corr_oob_read(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                              long long n, long long k) {
  T* tile = tile_memory<T>();
  long long start = (long long)blockIdx.x * blockDim.x, j = start + threadIdx.x;
  for (long long t = threadIdx.x; t < blockDim.x + k - 1; t += blockDim.x)
    tile[t] = x[start + t];  // BUG: no check against n in the last block
  __syncthreads();
  if (j < n - k + 1) store_dot(tile, w, y, k, j);
}
