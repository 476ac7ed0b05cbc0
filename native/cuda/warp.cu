// CUDA warp + crop into the engine's NCHW layout (the device twin of native/src/warp.cpp).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "flipnet/cuda_kernels.hpp"
#include "sampling.cuh"

namespace flipnet::cuda {
namespace {

struct Faces {
    detail::Inverse inv[detail::kFacesPerLaunch];
};

// Grid: (ceil(w / 16), ceil(h / 16), faces in this launch); one thread per crop pixel.
template <typename T>
__global__ void warp_crop_kernel(const std::uint8_t* src, int rows, int cols, long stride,
                                 Faces faces, int out_h, int out_w, Border border,
                                 uchar3 bval, T* out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    const int face = blockIdx.z;
    const std::uint8_t b[3] = {bval.x, bval.y, bval.z};
    float v[3];
    detail::sample_rgb(src, rows, cols, stride, faces.inv[face], x, y, border, b, v);
    const long plane = static_cast<long>(out_h) * out_w;
    T* dst = out + face * 3 * plane + static_cast<long>(y) * out_w + x;
    for (int c = 0; c < 3; ++c) {
        // v / 127.5 - 1 in float32, as flipnet_rt.imaging.tensor.to_float.
        const float f = __fsub_rn(__fdiv_rn(static_cast<float>(detail::to_u8(v[c])), 127.5f), 1.0f);
        if constexpr (sizeof(T) == 2)
            dst[c * plane] = __float2half_rn(f);
        else
            dst[c * plane] = f;
    }
}

}  // namespace

int warp_crop(const Frame& frame, const double* matrices, int count, int out_h, int out_w,
              Border border, const std::uint8_t border_value[3], void* out, DType dtype,
              void* stream) {
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    const dim3 block(16, 16);
    const uchar3 bval = make_uchar3(border_value[0], border_value[1], border_value[2]);
    const long face_elems = 3L * out_h * out_w;
    for (int first = 0; first < count; first += detail::kFacesPerLaunch) {
        const int n = std::min(detail::kFacesPerLaunch, count - first);
        Faces faces{};
        for (int i = 0; i < n; ++i) faces.inv[i] = detail::host_inverse(matrices + 6 * (first + i));
        const dim3 grid((out_w + 15) / 16, (out_h + 15) / 16, n);
        if (dtype == DType::Float16) {
            __half* dst = static_cast<__half*>(out) + first * face_elems;
            warp_crop_kernel<<<grid, block, 0, s>>>(frame.data, frame.height, frame.width,
                                                    frame.row_stride, faces, out_h, out_w, border,
                                                    bval, dst);
        } else {
            float* dst = static_cast<float*>(out) + first * face_elems;
            warp_crop_kernel<<<grid, block, 0, s>>>(frame.data, frame.height, frame.width,
                                                    frame.row_stride, faces, out_h, out_w, border,
                                                    bval, dst);
        }
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return static_cast<int>(err);
    }
    return 0;
}

const char* error_string(int code) {
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace flipnet::cuda
