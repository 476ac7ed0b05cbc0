// Affine warp + crop (bilinear, OpenCV border rules) into uint8 HWC or the engine's NCHW layout.
//
// The arithmetic follows cv2.warpAffine (OpenCV >= 4.11, warp_kernels.simd.hpp): the inverse matrix
// in float32, the source point x * M0 + (y * M1 + M2) (fused in OpenCV's vector path: here in
// double, rounded once, which is the fused result), floor and fraction in float32, two horizontal
// lerps then a vertical one in float32, rounded half to even to uint8.
#include <cmath>
#include <vector>

#include "flipnet/kernels.hpp"
#include "half.hpp"
#include "parallel.hpp"

namespace flipnet {
namespace {

// cv::borderInterpolate for an index outside [0, n).
inline int border_index(int p, int n, Border border) {
    if (static_cast<unsigned>(p) < static_cast<unsigned>(n)) return p;
    switch (border) {
        case Border::Replicate:
            return p < 0 ? 0 : n - 1;
        case Border::Reflect:
        case Border::Reflect101: {
            if (n == 1) return 0;
            const int delta = border == Border::Reflect101 ? 1 : 0;
            do {
                if (p < 0)
                    p = -p - 1 + delta;
                else
                    p = n - 1 - (p - n) - delta;
            } while (static_cast<unsigned>(p) >= static_cast<unsigned>(n));
            return p;
        }
        case Border::Constant:
        default:
            return -1;
    }
}

// The warp's inverse matrix in float32, as OpenCV's invoker holds it.
struct Inverse {
    float m[6];
};

Inverse float_inverse(const double* forward) {
    double inv[6];
    invert_affine(forward, inv);
    Inverse r{};
    for (int k = 0; k < 6; ++k) r.m[k] = static_cast<float>(inv[k]);
    return r;
}

// One output row of one face: calls store(x, r, g, b) with the float values before rounding,
// or store_border(x) for pixels that take the constant border value whole.
template <typename Store>
inline void warp_row(const Frame& f, const Inverse& inv, int y, int out_w, Border border,
                     const std::uint8_t bval[3], Store&& store) {
    const float* M = inv.m;
    const float mx = static_cast<float>(static_cast<float>(y) * M[1]) + M[2];
    const float my = static_cast<float>(static_cast<float>(y) * M[4]) + M[5];
    const int cols = f.width, rows = f.height;
    const Border bx = (border != Border::Constant && cols <= 1) ? Border::Replicate : border;
    const Border by = (border != Border::Constant && rows <= 1) ? Border::Replicate : border;
    for (int x = 0; x < out_w; ++x) {
        float sx = static_cast<float>(static_cast<double>(M[0]) * x + mx);
        float sy = static_cast<float>(static_cast<double>(M[3]) * x + my);
        const int ix = static_cast<int>(std::floor(sx)), iy = static_cast<int>(std::floor(sy));
        sx -= static_cast<float>(ix);
        sy -= static_cast<float>(iy);
        int p[4][3];  // p00, p01, p10, p11 x rgb
        if (static_cast<unsigned>(ix) < static_cast<unsigned>(cols - 1) &&
            static_cast<unsigned>(iy) < static_cast<unsigned>(rows - 1)) {
            const std::uint8_t* s = f.data + iy * f.row_stride + ix * 3;
            const std::uint8_t* t = s + f.row_stride;
            for (int c = 0; c < 3; ++c) {
                p[0][c] = s[c];
                p[1][c] = s[3 + c];
                p[2][c] = t[c];
                p[3][c] = t[3 + c];
            }
        } else {
            if (border == Border::Constant &&
                (static_cast<unsigned>(ix + 1) >= static_cast<unsigned>(cols + 1) ||
                 static_cast<unsigned>(iy + 1) >= static_cast<unsigned>(rows + 1))) {
                store(x, static_cast<float>(bval[0]), static_cast<float>(bval[1]),
                      static_cast<float>(bval[2]));
                continue;
            }
            for (int k = 0; k < 4; ++k) {
                const int px = ix + (k & 1), py = iy + (k >> 1);
                const int qx = border_index(px, cols, bx), qy = border_index(py, rows, by);
                if (qx < 0 || qy < 0) {
                    for (int c = 0; c < 3; ++c) p[k][c] = bval[c];
                } else {
                    const std::uint8_t* s = f.data + qy * f.row_stride + qx * 3;
                    for (int c = 0; c < 3; ++c) p[k][c] = s[c];
                }
            }
        }
        float v[3];
        for (int c = 0; c < 3; ++c) {
            const float v0 = static_cast<float>(p[0][c]) +
                             sx * static_cast<float>(p[1][c] - p[0][c]);
            const float v1 = static_cast<float>(p[2][c]) +
                             sx * static_cast<float>(p[3][c] - p[2][c]);
            v[c] = v0 + sy * (v1 - v0);
        }
        store(x, v[0], v[1], v[2]);
    }
}

// saturate_cast<uchar>(float): round half to even (lrintf under the default rounding mode), clip.
inline std::uint8_t to_u8(float v) {
    const long r = std::lrint(v);
    return static_cast<std::uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
}

}  // namespace

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
    for (int i = 0; i < count; ++i) inv[i] = float_inverse(matrices + 6 * i);
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
    for (int i = 0; i < count; ++i) inv[i] = float_inverse(matrices + 6 * i);
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
