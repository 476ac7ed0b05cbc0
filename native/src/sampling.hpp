// The bilinear sampling core shared by the warp and the paste: cv2.warpAffine's arithmetic.
//
// OpenCV >= 4.11 (warp_kernels.simd.hpp) holds the inverse matrix in float32, computes the source
// point as x * M0 + (y * M1 + M2) (fused in its vector path: here in double, rounded once, which is
// the fused result), takes floor and fraction in float32, lerps two rows then between them in
// float32, and rounds half to even to uint8.
#pragma once

#include <cmath>
#include <cstdint>

#include "flipnet/kernels.hpp"

namespace flipnet::detail {

// cv::borderInterpolate for an index outside [0, n); -1 for the constant border.
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

// The destination -> source matrix in float32, as OpenCV's invoker holds it.
struct Inverse {
    float m[6];
};

inline Inverse float_inverse(const double* forward) {
    double inv[6];
    invert_affine(forward, inv);
    Inverse r{};
    for (int k = 0; k < 6; ++k) r.m[k] = static_cast<float>(inv[k]);
    return r;
}

// The source point of destination pixel x on a row whose constants are (mx, my).
struct Tap {
    int ix, iy;  // top-left source pixel
    float fx, fy;  // fractions in [0, 1)
};

struct RowStart {
    float mx, my;
};

inline RowStart row_start(const Inverse& inv, int y) {
    const float* M = inv.m;
    return {static_cast<float>(static_cast<float>(y) * M[1]) + M[2],
            static_cast<float>(static_cast<float>(y) * M[4]) + M[5]};
}

inline Tap tap(const Inverse& inv, RowStart row, int x) {
    float sx = static_cast<float>(static_cast<double>(inv.m[0]) * x + row.mx);
    float sy = static_cast<float>(static_cast<double>(inv.m[3]) * x + row.my);
    const int ix = static_cast<int>(std::floor(sx)), iy = static_cast<int>(std::floor(sy));
    return {ix, iy, sx - static_cast<float>(ix), sy - static_cast<float>(iy)};
}

// cv2's bilinear blend of four samples.
inline float lerp2(float p00, float p01, float p10, float p11, float fx, float fy) {
    const float v0 = p00 + fx * (p01 - p00);
    const float v1 = p10 + fx * (p11 - p10);
    return v0 + fy * (v1 - v0);
}

// saturate_cast<uchar>(float): round half to even (lrintf in the default rounding mode), clip.
inline std::uint8_t to_u8(float v) {
    const long r = std::lrint(v);
    return static_cast<std::uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
}

// One destination row of an RGB warp: store(x, r, g, b) gets the float values before rounding.
template <typename Store>
inline void warp_row(const Frame& f, const Inverse& inv, int y, int out_w, Border border,
                     const std::uint8_t bval[3], Store&& store) {
    const RowStart row = row_start(inv, y);
    const int cols = f.width, rows = f.height;
    const Border bx = (border != Border::Constant && cols <= 1) ? Border::Replicate : border;
    const Border by = (border != Border::Constant && rows <= 1) ? Border::Replicate : border;
    for (int x = 0; x < out_w; ++x) {
        const Tap t = tap(inv, row, x);
        int p[4][3];  // p00, p01, p10, p11 x rgb
        if (static_cast<unsigned>(t.ix) < static_cast<unsigned>(cols - 1) &&
            static_cast<unsigned>(t.iy) < static_cast<unsigned>(rows - 1)) {
            const std::uint8_t* s = f.data + t.iy * f.row_stride + t.ix * 3;
            const std::uint8_t* u = s + f.row_stride;
            for (int c = 0; c < 3; ++c) {
                p[0][c] = s[c];
                p[1][c] = s[3 + c];
                p[2][c] = u[c];
                p[3][c] = u[3 + c];
            }
        } else {
            if (border == Border::Constant &&
                (static_cast<unsigned>(t.ix + 1) >= static_cast<unsigned>(cols + 1) ||
                 static_cast<unsigned>(t.iy + 1) >= static_cast<unsigned>(rows + 1))) {
                store(x, static_cast<float>(bval[0]), static_cast<float>(bval[1]),
                      static_cast<float>(bval[2]));
                continue;
            }
            for (int k = 0; k < 4; ++k) {
                const int qx = border_index(t.ix + (k & 1), cols, bx);
                const int qy = border_index(t.iy + (k >> 1), rows, by);
                if (qx < 0 || qy < 0) {
                    for (int c = 0; c < 3; ++c) p[k][c] = bval[c];
                } else {
                    const std::uint8_t* s = f.data + qy * f.row_stride + qx * 3;
                    for (int c = 0; c < 3; ++c) p[k][c] = s[c];
                }
            }
        }
        float v[3];
        for (int c = 0; c < 3; ++c)
            v[c] = lerp2(static_cast<float>(p[0][c]), static_cast<float>(p[1][c]),
                         static_cast<float>(p[2][c]), static_cast<float>(p[3][c]), t.fx, t.fy);
        store(x, v[0], v[1], v[2]);
    }
}

}  // namespace flipnet::detail
