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
using detail::to_u8;
using detail::warp_row;

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
        for (long r = lo; r < hi; ++r) {
            const int face = static_cast<int>(r / out_h), y = static_cast<int>(r % out_h);
            std::uint8_t* dst = out + r * out_w * 3;
            warp_row(frame, inv[face], y, out_w, border, border_value,
                     [dst](int x, float cr, float cg, float cb) {
                         dst[3 * x] = to_u8(cr);
                         dst[3 * x + 1] = to_u8(cg);
                         dst[3 * x + 2] = to_u8(cb);
                     });
        }
    });
}

void warp_crop(const Frame& frame, const double* matrices, int count, int out_h, int out_w,
               Border border, const std::uint8_t border_value[3], void* out, DType dtype,
               int threads) {
    std::vector<Inverse> inv(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) inv[i] = detail::float_inverse(matrices + 6 * i);
    // v / 127.5 - 1 for every uint8 value, as to_float computes it in float32.
    float table[256];
    std::uint16_t half_table[256];
    for (int v = 0; v < 256; ++v) {
        table[v] = static_cast<float>(v) / 127.5f - 1.0f;
        half_table[v] = detail::to_half(table[v]);
    }
    const long plane = static_cast<long>(out_h) * out_w;
    const long rows = static_cast<long>(count) * out_h;
    detail::parallel_for(rows, threads, [&](long lo, long hi) {
        for (long r = lo; r < hi; ++r) {
            const int face = static_cast<int>(r / out_h), y = static_cast<int>(r % out_h);
            const long base = face * 3 * plane + static_cast<long>(y) * out_w;
            if (dtype == DType::Float32) {
                float* dst = static_cast<float*>(out) + base;
                warp_row(frame, inv[face], y, out_w, border, border_value,
                         [dst, plane, &table](int x, float cr, float cg, float cb) {
                             dst[x] = table[to_u8(cr)];
                             dst[plane + x] = table[to_u8(cg)];
                             dst[2 * plane + x] = table[to_u8(cb)];
                         });
            } else {
                std::uint16_t* dst = static_cast<std::uint16_t*>(out) + base;
                warp_row(frame, inv[face], y, out_w, border, border_value,
                         [dst, plane, &half_table](int x, float cr, float cg, float cb) {
                             dst[x] = half_table[to_u8(cr)];
                             dst[plane + x] = half_table[to_u8(cg)];
                             dst[2 * plane + x] = half_table[to_u8(cb)];
                         });
            }
        }
    });
}

}  // namespace flipnet
