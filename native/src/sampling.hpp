// The bilinear sampling core shared by the warp and the paste: cv2.warpAffine's arithmetic.
//
// OpenCV >= 4.11 (warp_kernels.simd.hpp) holds the inverse matrix in float32, computes the source
// point as x * M0 + (y * M1 + M2) (fused in its vector path: here in double, rounded once, which is
// the fused result), takes floor and fraction in float32, lerps two rows then between them in
// float32, and rounds half to even to uint8.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "flipnet/kernels.hpp"

namespace flipnet::detail {

// cv::borderInterpolate for an index outside [0, n); -1 for the constant border. Reflections use
// the pattern's period (2n, or 2n - 2 for REFLECT_101), so far-off indices cost no loop.
inline int border_index(int p, int n, Border border) {
    if (static_cast<unsigned>(p) < static_cast<unsigned>(n)) return p;
    switch (border) {
        case Border::Replicate:
            return p < 0 ? 0 : n - 1;
        case Border::Reflect:
        case Border::Reflect101: {
            if (n == 1) return 0;
            const long period = border == Border::Reflect101 ? 2L * n - 2 : 2L * n;
            long q = p % period;
            if (q < 0) q += period;
            if (q >= n) q = (border == Border::Reflect101 ? 2L * n - 2 : 2L * n - 1) - q;
            return static_cast<int>(q);
        }
        case Border::Constant:
        default:
            return -1;
    }
}

// cvFloor: floor of a float as an int, inline (std::floor is a library call without SSE4.1).
// Arguments are clamped to +-2^30 first: such points are off any image either way.
inline int floor_int(float v) {
    v = v < -1073741824.0f ? -1073741824.0f : (v > 1073741824.0f ? 1073741824.0f : v);
    const int i = static_cast<int>(v);
    return i - (static_cast<float>(i) > v ? 1 : 0);
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
    const int ix = floor_int(sx), iy = floor_int(sy);
    return {ix, iy, sx - static_cast<float>(ix), sy - static_cast<float>(iy)};
}

// cv2's bilinear blend of four samples.
inline float lerp2(float p00, float p01, float p10, float p11, float fx, float fy) {
    const float v0 = p00 + fx * (p01 - p00);
    const float v1 = p10 + fx * (p11 - p10);
    return v0 + fy * (v1 - v0);
}

// saturate_cast<uchar>(float): round half to even (lrintf in the default rounding mode; inline
// with -fno-math-errno), clip.
inline std::uint8_t to_u8(float v) {
    const long r = std::lrint(v);
    return static_cast<std::uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
}

// Scratch for sample_row: one destination row's coordinates and values, reused across rows.
struct RowBuffer {
    std::vector<int> ix, iy;
    std::vector<float> fx, fy, v;  // v: 3 planes of float values before rounding
    std::vector<std::uint8_t> u;   // u: 3 planes of rounded uint8 values (the warp's output)

    void resize(int width) {
        const size_t n = static_cast<size_t>(width);
        ix.resize(n), iy.resize(n), fx.resize(n), fy.resize(n), v.resize(3 * n), u.resize(3 * n);
    }
};

// One destination row of an RGB warp into buf.u (planar: r[0..w), g[w..2w), b[2w..3w)), in three
// passes: the source points (vectorised), the 4-tap gathers and lerps (scalar, the border rules on
// the rim), the rounding (vectorised; x + 1.5 * 2^23 - 1.5 * 2^23 rounds half to even).
inline void sample_row(const Frame& f, const Inverse& inv, int y, int out_w, Border border,
                       const std::uint8_t bval[3], RowBuffer& buf) {
    const RowStart row = row_start(inv, y);
    const double m0 = inv.m[0], m3 = inv.m[3];
    const double mx = row.mx, my = row.my;
    int* __restrict ixs = buf.ix.data();
    int* __restrict iys = buf.iy.data();
    float* __restrict fxs = buf.fx.data();
    float* __restrict fys = buf.fy.data();
    for (int x = 0; x < out_w; ++x) {
        float sx = static_cast<float>(m0 * x + mx), sy = static_cast<float>(m3 * x + my);
        sx = sx < -1073741824.0f ? -1073741824.0f : (sx > 1073741824.0f ? 1073741824.0f : sx);
        sy = sy < -1073741824.0f ? -1073741824.0f : (sy > 1073741824.0f ? 1073741824.0f : sy);
        int ix = static_cast<int>(sx), iy = static_cast<int>(sy);
        ix -= static_cast<float>(ix) > sx ? 1 : 0;
        iy -= static_cast<float>(iy) > sy ? 1 : 0;
        ixs[x] = ix, iys[x] = iy;
        fxs[x] = sx - static_cast<float>(ix), fys[x] = sy - static_cast<float>(iy);
    }
    const int cols = f.width, rows = f.height;
    const Border bx = (border != Border::Constant && cols <= 1) ? Border::Replicate : border;
    const Border by = (border != Border::Constant && rows <= 1) ? Border::Replicate : border;
    float* __restrict vr = buf.v.data();
    float* __restrict vg = vr + out_w;
    float* __restrict vb = vg + out_w;
    for (int x = 0; x < out_w; ++x) {
        const int ix = ixs[x], iy = iys[x];
        const float fx = fxs[x], fy = fys[x];
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
        } else if (border == Border::Constant &&
                   (static_cast<unsigned>(ix + 1) >= static_cast<unsigned>(cols + 1) ||
                    static_cast<unsigned>(iy + 1) >= static_cast<unsigned>(rows + 1))) {
            vr[x] = bval[0], vg[x] = bval[1], vb[x] = bval[2];
            continue;
        } else {
            for (int k = 0; k < 4; ++k) {
                const int qx = border_index(ix + (k & 1), cols, bx);
                const int qy = border_index(iy + (k >> 1), rows, by);
                if (qx < 0 || qy < 0) {
                    for (int c = 0; c < 3; ++c) p[k][c] = bval[c];
                } else {
                    const std::uint8_t* s = f.data + qy * f.row_stride + qx * 3;
                    for (int c = 0; c < 3; ++c) p[k][c] = s[c];
                }
            }
        }
        vr[x] = lerp2(float(p[0][0]), float(p[1][0]), float(p[2][0]), float(p[3][0]), fx, fy);
        vg[x] = lerp2(float(p[0][1]), float(p[1][1]), float(p[2][1]), float(p[3][1]), fx, fy);
        vb[x] = lerp2(float(p[0][2]), float(p[1][2]), float(p[2][2]), float(p[3][2]), fx, fy);
    }
    const float* __restrict v = buf.v.data();
    std::uint8_t* __restrict u = buf.u.data();
    const float magic = 12582912.0f;  // 1.5 * 2^23
    for (int i = 0; i < 3 * out_w; ++i) {
        float r = (v[i] + magic) - magic;
        r = r < 0.0f ? 0.0f : (r > 255.0f ? 255.0f : r);
        u[i] = static_cast<std::uint8_t>(static_cast<int>(r));
    }
}

}  // namespace flipnet::detail
