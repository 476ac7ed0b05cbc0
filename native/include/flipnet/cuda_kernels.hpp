// CUDA kernels for the per-face image work (built with FLIPNET_CUDA): the device twins of
// kernels.hpp, same arithmetic, on raw device pointers and a caller's stream.
//
// Device arrays come from any framework (CuPy, torch, ...) through DLPack in the Python module.
// Matrices stay on the host (they travel as kernel parameters). Every function only enqueues work
// on `stream` (a cudaStream_t; null = the legacy default stream) and returns a cudaError_t value
// (0 = success; error_string() names it). No function synchronises the stream.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flipnet/kernels.hpp"

namespace flipnet::cuda {

// warp_crop of kernels.hpp: frame (device, uint8 HWC) -> out (device, [count, 3, out_h, out_w]).
int warp_crop(const Frame& frame, const double* matrices, int count, int out_h, int out_w,
              Border border, const std::uint8_t border_value[3], void* out, DType dtype,
              void* stream);

// paste_faces of kernels.hpp: frame (device, in place), faces (device, [count, size, size, 3]).
// Scratch memory is taken from the stream-ordered allocator (cudaMallocAsync) on the stream's
// device; its default pool's release threshold is raised once per device, so freed scratch stays
// in the pool for the next call instead of going back to the driver at each synchronisation.
int paste_faces(std::uint8_t* frame, int height, int width, std::ptrdiff_t row_stride,
                const std::uint8_t* faces, int count, int size, const double* matrices,
                void* stream);

// wavelet_color_fix of kernels.hpp on device [planes, height, width] float32 arrays.
int wavelet_color_fix(const float* image, const float* reference, float* out, int planes,
                      int height, int width, int levels, void* stream);

// The message of a code returned above.
const char* error_string(int code);

}  // namespace flipnet::cuda
