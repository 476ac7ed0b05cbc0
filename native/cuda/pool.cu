// The default memory pool's release threshold, set once per device (pool.cuh).
#include <cstdint>
#include <mutex>
#include <vector>

#include "pool.cuh"

namespace flipnet::cuda::detail {

cudaError_t prepare_scratch_pool(cudaStream_t stream) {
    static std::mutex lock;
    static std::vector<bool> done;  // by device index
    int device = 0;
#if CUDART_VERSION >= 12080
    // The null, legacy and per-thread default streams belong to the current device.
    const bool special = stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread;
    cudaError_t err = special ? cudaGetDevice(&device) : cudaStreamGetDevice(stream, &device);
#else
    cudaError_t err = cudaGetDevice(&device);
#endif
    if (err != cudaSuccess) return err;
    const std::lock_guard<std::mutex> guard(lock);
    if (static_cast<size_t>(device) < done.size() && done[device]) return cudaSuccess;
    cudaMemPool_t pool = nullptr;
    err = cudaDeviceGetDefaultMemPool(&pool, device);
    if (err != cudaSuccess) return err;
    std::uint64_t threshold = UINT64_MAX;  // keep what the kernels freed for their next call
    err = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
    if (err != cudaSuccess) return err;
    if (done.size() <= static_cast<size_t>(device)) done.resize(device + 1, false);
    done[device] = true;
    return cudaSuccess;
}

}  // namespace flipnet::cuda::detail
