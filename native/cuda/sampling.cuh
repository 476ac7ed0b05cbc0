// Device side of the bilinear sampling core (native/src/sampling.hpp): cv2.warpAffine's arithmetic.
// The source point is the fused x * M0 + (y * M1 + M2) (__fmaf_rn, as OpenCV's vector path).
#pragma once

#include <cstdint>

#include "flipnet/kernels.hpp"

namespace flipnet::cuda::detail {

// Up to this many faces' matrices travel in one launch's parameters.
constexpr int kFacesPerLaunch = 64;

struct Inverse {
    float m[6];
};

struct Tap {
    int ix, iy;
    float fx, fy;
};

__device__ inline Tap tap(const Inverse& inv, int x, int y) {
    const float mx = __fadd_rn(__fmul_rn(static_cast<float>(y), inv.m[1]), inv.m[2]);
    const float my = __fadd_rn(__fmul_rn(static_cast<float>(y), inv.m[4]), inv.m[5]);
    const float sx = __fmaf_rn(inv.m[0], static_cast<float>(x), mx);
    const float sy = __fmaf_rn(inv.m[3], static_cast<float>(x), my);
    const int ix = static_cast<int>(floorf(sx)), iy = static_cast<int>(floorf(sy));
    return {ix, iy, sx - static_cast<float>(ix), sy - static_cast<float>(iy)};
}

__device__ inline float lerp2(float p00, float p01, float p10, float p11, float fx, float fy) {
    const float v0 = __fadd_rn(p00, __fmul_rn(fx, p01 - p00));
    const float v1 = __fadd_rn(p10, __fmul_rn(fx, p11 - p10));
    return __fadd_rn(v0, __fmul_rn(fy, v1 - v0));
}

__device__ inline std::uint8_t to_u8(float v) {
    const int r = __float2int_rn(v);  // half to even, like lrintf
    return static_cast<std::uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
}

// cv::borderInterpolate; -1 for the constant border (reflections by the pattern's period).
__device__ inline int border_index(int p, int n, Border border) {
    if (static_cast<unsigned>(p) < static_cast<unsigned>(n)) return p;
    if (border == Border::Replicate) return p < 0 ? 0 : n - 1;
    if (border == Border::Reflect || border == Border::Reflect101) {
        if (n == 1) return 0;
        const bool r101 = border == Border::Reflect101;
        const long period = r101 ? 2L * n - 2 : 2L * n;
        long q = p % period;
        if (q < 0) q += period;
        if (q >= n) q = (r101 ? 2L * n - 2 : 2L * n - 1) - q;
        return static_cast<int>(q);
    }
    return -1;
}

// One RGB sample of a uint8 HWC image at destination pixel (x, y): the float values before
// rounding, in v[3].
__device__ inline void sample_rgb(const std::uint8_t* src, int rows, int cols, long stride,
                                  const Inverse& inv, int x, int y, Border border,
                                  const std::uint8_t bval[3], float v[3]) {
    const Tap t = tap(inv, x, y);
    int p[4][3];
    if (static_cast<unsigned>(t.ix) < static_cast<unsigned>(cols - 1) &&
        static_cast<unsigned>(t.iy) < static_cast<unsigned>(rows - 1)) {
        const std::uint8_t* s = src + t.iy * stride + t.ix * 3;
        for (int c = 0; c < 3; ++c) {
            p[0][c] = s[c];
            p[1][c] = s[3 + c];
            p[2][c] = s[stride + c];
            p[3][c] = s[stride + 3 + c];
        }
    } else {
        if (border == Border::Constant &&
            (static_cast<unsigned>(t.ix + 1) >= static_cast<unsigned>(cols + 1) ||
             static_cast<unsigned>(t.iy + 1) >= static_cast<unsigned>(rows + 1))) {
            for (int c = 0; c < 3; ++c) v[c] = static_cast<float>(bval[c]);
            return;
        }
        const Border bx = (border != Border::Constant && cols <= 1) ? Border::Replicate : border;
        const Border by = (border != Border::Constant && rows <= 1) ? Border::Replicate : border;
        for (int k = 0; k < 4; ++k) {
            const int qx = border_index(t.ix + (k & 1), cols, bx);
            const int qy = border_index(t.iy + (k >> 1), rows, by);
            for (int c = 0; c < 3; ++c)
                p[k][c] = (qx < 0 || qy < 0) ? bval[c] : src[qy * stride + qx * 3 + c];
        }
    }
    for (int c = 0; c < 3; ++c)
        v[c] = lerp2(static_cast<float>(p[0][c]), static_cast<float>(p[1][c]),
                     static_cast<float>(p[2][c]), static_cast<float>(p[3][c]), t.fx, t.fy);
}

// The float32 inverse of a host frame -> crop matrix (cv::invertAffineTransform, then float).
inline Inverse host_inverse(const double* forward) {
    double inv[6];
    invert_affine(forward, inv);
    Inverse r{};
    for (int k = 0; k < 6; ++k) r.m[k] = static_cast<float>(inv[k]);
    return r;
}

}  // namespace flipnet::cuda::detail
