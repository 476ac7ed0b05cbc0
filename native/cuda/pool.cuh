// Scratch memory for the CUDA kernels: the stream-ordered allocator's default pool, kept warm.
#pragma once

#include <cuda_runtime.h>

namespace flipnet::cuda::detail {

// Before the first cudaMallocAsync on a device: raises the release threshold of that device's
// default memory pool to UINT64_MAX, once per device and process. With CUDA's default (0) the
// pool hands its memory back to the driver at every synchronisation, so each call's scratch would
// be a fresh driver allocation; with it the freed scratch stays in the pool for the next call.
// `stream`'s device is the one whose pool cudaMallocAsync(…, stream) uses. Returns the CUDA error
// (cudaSuccess once done; on an error nothing is recorded and the next call tries again).
cudaError_t prepare_scratch_pool(cudaStream_t stream);

}  // namespace flipnet::cuda::detail
