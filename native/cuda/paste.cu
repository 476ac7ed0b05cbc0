// CUDA paste-back (the device twin of native/src/paste.cpp), face by face in order, inside each
// face's box only. The box comes from the host matrices; the feathering width w depends on the
// mask's sum, so it is computed on the device and read by the later kernels: nothing waits on
// the host between launches.
#include <cuda_runtime.h>

#include <vector>

#include "flipnet/cuda_kernels.hpp"
#include "pool.cuh"
#include "sampling.cuh"

namespace flipnet::cuda {
namespace {

constexpr int kMaxW = 512;  // feathering half-width cap: w = sqrt(area) / 20 is ~290 at 8K

struct Feather {
    double sum;                // sum of the eroded mask (float64, as the reference)
    int w;                     // feathering width
    float taps[kMaxW + 1];     // Gaussian taps by offset 0..w (symmetric)
};

// 1. The face warped into the box (uint8 values, constant 0 border) and the warped ones mask.
__global__ void warp_face_and_mask(const std::uint8_t* face, int size, detail::Inverse to_crop,
                                   int bw, int bh, std::uint8_t* warped, float* mask) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= bw || y >= bh) return;
    const std::uint8_t zero[3] = {0, 0, 0};
    float v[3];
    detail::sample_rgb(face, size, size, 3L * size, to_crop, x, y, Border::Constant, zero, v);
    const long i = static_cast<long>(y) * bw + x;
    for (int c = 0; c < 3; ++c) warped[3 * i + c] = detail::to_u8(v[c]);
    const detail::Tap t = detail::tap(to_crop, x, y);
    float m;
    if (static_cast<unsigned>(t.ix) < static_cast<unsigned>(size - 1) &&
        static_cast<unsigned>(t.iy) < static_cast<unsigned>(size - 1)) {
        m = 1.0f;
    } else if (static_cast<unsigned>(t.ix + 1) >= static_cast<unsigned>(size + 1) ||
               static_cast<unsigned>(t.iy + 1) >= static_cast<unsigned>(size + 1)) {
        m = 0.0f;
    } else {
        auto in = [size](int px, int py) {
            return (static_cast<unsigned>(px) < static_cast<unsigned>(size) &&
                    static_cast<unsigned>(py) < static_cast<unsigned>(size)) ? 1.0f : 0.0f;
        };
        m = detail::lerp2(in(t.ix, t.iy), in(t.ix + 1, t.iy), in(t.ix, t.iy + 1),
                          in(t.ix + 1, t.iy + 1), t.fx, t.fy);
    }
    mask[i] = m;
}

// 2. mask_e = erode(mask, 2x2) and its sum.
__global__ void erode2_and_sum(const float* mask, int bw, int bh, float* mask_e, Feather* f) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    double v = 0.0;
    if (x < bw && y < bh) {
        const float* b = mask + static_cast<long>(y) * bw;
        const float* a = mask + static_cast<long>(max(y - 1, 0)) * bw;
        float m = fminf(a[x], b[x]);
        if (x > 0) m = fminf(m, fminf(a[x - 1], b[x - 1]));
        mask_e[static_cast<long>(y) * bw + x] = m;
        v = m;
    }
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if ((threadIdx.x + threadIdx.y * blockDim.x) % 32 == 0) atomicAdd(&f->sum, v);
}

// 3. w = max(int(sqrt(sum)) // 20, 1) and OpenCV's Gaussian taps of size 2w + 1 (one thread).
__global__ void feather_params(Feather* f) {
    int w = static_cast<int>(sqrt(f->sum)) / 20;
    w = min(max(w, 1), kMaxW);
    f->w = w;
    const int n = 2 * w + 1;
    if (n <= 7) {
        const float small[4][4] = {{1.f, 0, 0, 0},
                                   {0.5f, 0.25f, 0, 0},
                                   {0.375f, 0.25f, 0.0625f, 0},
                                   {0.28125f, 0.21875f, 0.109375f, 0.03125f}};
        for (int j = 0; j <= w; ++j) f->taps[j] = small[w][j];
        return;
    }
    const double sigma = ((n - 1) * 0.5 - 1) * 0.3 + 0.8;
    const double scale = -0.5 / (sigma * sigma);
    double sum = 0;
    for (int i = 0; i < n; ++i) {
        const double d = i - (n - 1) * 0.5;
        sum += exp(scale * d * d);
    }
    for (int j = 0; j <= w; ++j) f->taps[j] = static_cast<float>(exp(scale * j * j) / sum);
}

// 4-5. Erosion by the 2w x 2w rectangle (window [i - w, i + w - 1], outside ignored), per axis.
__global__ void min_rows(const float* in, float* out, int bw, int bh, const Feather* f) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= bw || y >= bh) return;
    const int w = f->w;
    const float* row = in + static_cast<long>(y) * bw;
    float m = row[x];
    for (int i = max(x - w, 0); i <= min(x + w - 1, bw - 1); ++i) m = fminf(m, row[i]);
    out[static_cast<long>(y) * bw + x] = m;
}

__global__ void min_cols(const float* in, float* out, int bw, int bh, const Feather* f) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= bw || y >= bh) return;
    const int w = f->w;
    float m = in[static_cast<long>(y) * bw + x];
    for (int i = max(y - w, 0); i <= min(y + w - 1, bh - 1); ++i)
        m = fminf(m, in[static_cast<long>(i) * bw + x]);
    out[static_cast<long>(y) * bw + x] = m;
}

__device__ inline int reflect101(int p, int n) {
    return detail::border_index(p, n, Border::Reflect101);
}

// 6. Gaussian blur of the rows (REFLECT_101), the CPU kernel's order of operations.
__global__ void blur_rows(const float* in, float* out, int bw, int bh, const Feather* f) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= bw || y >= bh) return;
    const float* row = in + static_cast<long>(y) * bw;
    float d = __fmul_rn(f->taps[0], row[x]);
    for (int j = 1; j <= f->w; ++j)
        d = __fadd_rn(d, __fmul_rn(f->taps[j], __fadd_rn(row[reflect101(x - j, bw)],
                                                         row[reflect101(x + j, bw)])));
    out[static_cast<long>(y) * bw + x] = d;
}

// 7. Blur of the columns, then cv2.blendLinear(face, frame, soft * mask_e, 1 - soft).
__global__ void blur_cols_and_blend(const float* rows, const float* mask_e,
                                    const std::uint8_t* warped, int bw, int bh,
                                    const Feather* f, std::uint8_t* frame, long row_stride,
                                    int x0, int y0) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= bw || y >= bh) return;
    float s = __fmul_rn(f->taps[0], rows[static_cast<long>(y) * bw + x]);
    for (int j = 1; j <= f->w; ++j)
        s = __fadd_rn(s, __fmul_rn(f->taps[j],
                                   __fadd_rn(rows[static_cast<long>(reflect101(y - j, bh)) * bw + x],
                                             rows[static_cast<long>(reflect101(y + j, bh)) * bw + x])));
    const long i = static_cast<long>(y) * bw + x;
    const float w1 = __fmul_rn(s, mask_e[i]), w2 = __fsub_rn(1.0f, s);
    const float den = __fadd_rn(__fadd_rn(w1, w2), 1e-5f);
    std::uint8_t* px = frame + (y0 + y) * row_stride + (x0 + x) * 3;
    for (int c = 0; c < 3; ++c) {
        const float num = __fadd_rn(__fmul_rn(static_cast<float>(warped[3 * i + c]), w1),
                                    __fmul_rn(static_cast<float>(px[c]), w2));
        px[c] = detail::to_u8(__fdiv_rn(num, den));
    }
}

}  // namespace

int paste_faces(std::uint8_t* frame, int height, int width, std::ptrdiff_t row_stride,
                const std::uint8_t* faces, int count, int size, const double* matrices,
                void* stream) {
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    const long face_bytes = 3L * size * size;
    const dim3 block(32, 8);
    if (count > 0) {
        const cudaError_t err = detail::prepare_scratch_pool(s);
        if (err != cudaSuccess) return static_cast<int>(err);
    }
    for (int i = 0; i < count; ++i) {
        double inv[6];
        invert_affine(matrices + 6 * i, inv);
        Box box{};
        if (!paste_box(inv, size, height, width, &box)) continue;
        inv[2] -= box.x0;
        inv[5] -= box.y0;
        const detail::Inverse to_crop = detail::host_inverse(inv);
        const int bw = box.x1 - box.x0, bh = box.y1 - box.y0;
        const long n = static_cast<long>(bw) * bh;
        // Scratch: 4 float planes, the warped face, the feather parameters.
        const size_t bytes = 4 * n * sizeof(float) + 3 * n + sizeof(Feather) + 16;
        char* scratch = nullptr;
        cudaError_t err = cudaMallocAsync(reinterpret_cast<void**>(&scratch), bytes, s);
        if (err != cudaSuccess) return static_cast<int>(err);
        float* mask = reinterpret_cast<float*>(scratch);
        float* mask_e = mask + n;
        float* tmp = mask + 2 * n;
        float* center = mask + 3 * n;
        Feather* f = reinterpret_cast<Feather*>(mask + 4 * n);
        std::uint8_t* warped = reinterpret_cast<std::uint8_t*>(f + 1);
        const dim3 grid((bw + 31) / 32, (bh + 7) / 8);
        err = cudaMemsetAsync(f, 0, sizeof(Feather), s);
        if (err == cudaSuccess) {
            warp_face_and_mask<<<grid, block, 0, s>>>(faces + i * face_bytes, size, to_crop, bw, bh,
                                                      warped, mask);
            erode2_and_sum<<<grid, block, 0, s>>>(mask, bw, bh, mask_e, f);
            feather_params<<<1, 1, 0, s>>>(f);
            min_rows<<<grid, block, 0, s>>>(mask_e, tmp, bw, bh, f);
            min_cols<<<grid, block, 0, s>>>(tmp, center, bw, bh, f);
            blur_rows<<<grid, block, 0, s>>>(center, tmp, bw, bh, f);
            blur_cols_and_blend<<<grid, block, 0, s>>>(tmp, mask_e, warped, bw, bh, f, frame,
                                                       row_stride, box.x0, box.y0);
            err = cudaGetLastError();
        }
        const cudaError_t freed = cudaFreeAsync(scratch, s);
        if (err != cudaSuccess) return static_cast<int>(err);
        if (freed != cudaSuccess) return static_cast<int>(freed);
    }
    return 0;
}

}  // namespace flipnet::cuda
