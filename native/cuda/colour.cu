// CUDA wavelet colour fix (the device twin of native/src/colour.cpp): same taps, same order of
// float32 operations (built with --fmad=false), so it matches the CPU kernel bit for bit.
#include <cuda_runtime.h>

#include "flipnet/cuda_kernels.hpp"
#include "pool.cuh"

namespace flipnet::cuda {
namespace {

__device__ inline float taps(float a, float b, float c) {
    return __fadd_rn(__fadd_rn(__fmul_rn(0.25f, a), __fmul_rn(0.5f, b)), __fmul_rn(0.25f, c));
}

// Grid over (x, y, plane); edges replicated (index clamped).
__global__ void blur_rows(const float* src, float* dst, int height, int width, int r) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const float* s = src + (static_cast<long>(blockIdx.z) * height + y) * width;
    dst[(static_cast<long>(blockIdx.z) * height + y) * width + x] =
        taps(s[max(x - r, 0)], s[x], s[min(x + r, width - 1)]);
}

__global__ void blur_cols(const float* src, float* dst, int height, int width, int r) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const float* s = src + static_cast<long>(blockIdx.z) * height * width + x;
    dst[(static_cast<long>(blockIdx.z) * height + y) * width + x] =
        taps(s[static_cast<long>(max(y - r, 0)) * width], s[static_cast<long>(y) * width],
             s[static_cast<long>(min(y + r, height - 1)) * width]);
}

__global__ void combine(const float* image, const float* low_image, const float* low_ref,
                        float* out, long n) {
    const long i = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __fadd_rn(__fsub_rn(image[i], low_image[i]), low_ref[i]);
}

// The low band of `src` into `dst` (`tmp` is scratch of the same size); dst may not alias src.
cudaError_t low(const float* src, float* dst, float* tmp, int planes, int height, int width,
                int levels, cudaStream_t s) {
    const dim3 block(32, 8), grid((width + 31) / 32, (height + 7) / 8, planes);
    const float* in = src;
    for (int level = 0; level < levels; ++level) {
        blur_rows<<<grid, block, 0, s>>>(in, tmp, height, width, 1 << level);
        blur_cols<<<grid, block, 0, s>>>(tmp, dst, height, width, 1 << level);
        in = dst;  // in place across levels is safe: blur_rows reads dst, writes tmp
    }
    return cudaGetLastError();
}

}  // namespace

int wavelet_color_fix(const float* image, const float* reference, float* out, int planes,
                      int height, int width, int levels, void* stream) {
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    const long n = static_cast<long>(planes) * height * width;
    if (levels == 0) {
        if (out == image) return 0;
        return static_cast<int>(cudaMemcpyAsync(out, image, n * sizeof(float),
                                                cudaMemcpyDeviceToDevice, s));
    }
    cudaError_t err = detail::prepare_scratch_pool(s);
    if (err != cudaSuccess) return static_cast<int>(err);
    float* scratch = nullptr;
    err = cudaMallocAsync(reinterpret_cast<void**>(&scratch), 3 * n * sizeof(float), s);
    if (err != cudaSuccess) return static_cast<int>(err);
    float *tmp = scratch, *low_image = scratch + n, *low_ref = scratch + 2 * n;
    err = low(image, low_image, tmp, planes, height, width, levels, s);
    if (err == cudaSuccess) err = low(reference, low_ref, tmp, planes, height, width, levels, s);
    if (err == cudaSuccess) {
        combine<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(image, low_image, low_ref,
                                                                      out, n);
        err = cudaGetLastError();
    }
    const cudaError_t freed = cudaFreeAsync(scratch, s);
    return static_cast<int>(err != cudaSuccess ? err : freed);
}

}  // namespace flipnet::cuda
