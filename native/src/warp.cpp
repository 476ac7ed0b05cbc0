// Affine warp + crop (bilinear, OpenCV border rules) into uint8 HWC or the engine's NCHW layout.
// The arithmetic is cv2.warpAffine's (sampling.hpp).
#include <cmath>
#include <vector>

#include "flipnet/kernels.hpp"
#include "half.hpp"
#include "sampling.hpp"
#include "parallel.hpp"

namespace flipnet {

using detail::Inverse;

bool valid_border(int code) {
    return code == 0 || code == 1 || code == 2 || code == 4;
}

void invert_affine(const double m[6], double inv[6]) {
    double d = m[0] * m[4] - m[1] * m[3];
    d = d != 0.0 ? 1.0 / d : 0.0;
    const double a11 = m[4] * d, a22 = m[0] * d, a12 = -m[1] * d, a21 = -m[3] * d;
    inv[0] = a11;
    inv[1] = a12;
    inv[2] = -a11 * m[2] - a12 * m[5];
    inv[3] = a21;
    inv[4] = a22;
    inv[5] = -a21 * m[2] - a22 * m[5];
}

void warp_u8(const Frame& frame, const double* matrices, int count, int out_h, int out_w,
             Border border, const std::uint8_t border_value[3], std::uint8_t* out, int threads) {
    std::vector<Inverse> inv(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) inv[i] = detail::float_inverse(matrices + 6 * i);
    const long rows = static_cast<long>(count) * out_h;
    detail::parallel_for(rows, threads, [&](long lo, long hi) {
        detail::RowBuffer buf;
        buf.resize(out_w);
        for (long r = lo; r < hi; ++r) {
            const int face = static_cast<int>(r / out_h), y = static_cast<int>(r % out_h);
            detail::sample_row(frame, inv[face], y, out_w, border, border_value, buf);
            std::uint8_t* dst = out + r * out_w * 3;
            const std::uint8_t* u = buf.u.data();
            for (int x = 0; x < out_w; ++x) {
                dst[3 * x] = u[x];
                dst[3 * x + 1] = u[out_w + x];
                dst[3 * x + 2] = u[2 * out_w + x];
            }
        }
    });
}

void warp_crop(const Frame& frame, const double* matrices, int count, int out_h, int out_w,
               Border border, const std::uint8_t border_value[3], void* out, DType dtype,
               int threads) {
    std::vector<Inverse> inv(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) inv[i] = detail::float_inverse(matrices + 6 * i);
    // v / 127.5 - 1 for every uint8 value in float16, as to_float(...).astype(float16).
    std::uint16_t half_table[256];
    for (int v = 0; v < 256; ++v)
        half_table[v] = detail::to_half(static_cast<float>(v) / 127.5f - 1.0f);
    const long plane = static_cast<long>(out_h) * out_w;
    const long rows = static_cast<long>(count) * out_h;
    detail::parallel_for(rows, threads, [&](long lo, long hi) {
        detail::RowBuffer buf;
        buf.resize(out_w);
        for (long r = lo; r < hi; ++r) {
            const int face = static_cast<int>(r / out_h), y = static_cast<int>(r % out_h);
            detail::sample_row(frame, inv[face], y, out_w, border, border_value, buf);
            const long base = face * 3 * plane + static_cast<long>(y) * out_w;
            for (int c = 0; c < 3; ++c) {
                const std::uint8_t* __restrict u = buf.u.data() + c * out_w;
                if (dtype == DType::Float32) {
                    // v / 127.5 - 1 in float32, as flipnet_rt.imaging.tensor.to_float.
                    float* __restrict dst = static_cast<float*>(out) + base + c * plane;
                    for (int x = 0; x < out_w; ++x)
                        dst[x] = static_cast<float>(u[x]) / 127.5f - 1.0f;
                } else {
                    std::uint16_t* dst = static_cast<std::uint16_t*>(out) + base + c * plane;
                    for (int x = 0; x < out_w; ++x) dst[x] = half_table[u[x]];
                }
            }
        }
    });
}

}  // namespace flipnet
