// Paste-back of restored faces through facexlib's feathered mask, inside each face's box only.
//
// The port of flipnet_rt/faces/paste.py (its module docstring states the rule step by step):
// box from the crop square's corners (+2 px, clipped); inverse warp of the face (uint8, constant 0
// border) and of a ones mask (float32); 2x2 erosion; w = int(sqrt(sum)) // 20 (at least 1);
// 2w x 2w erosion; Gaussian blur of size 2w + 1 (OpenCV's sigma for sigma = 0, REFLECT_101
// border); blend as cv2.blendLinear(face, frame, soft * mask_e, 1 - soft): (w1 * F + w2 * B) /
// (w1 + w2 + 1e-5), rounded half to even. Faces are pasted in order (a later one over an earlier).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "flipnet/kernels.hpp"
#include "parallel.hpp"
#include "sampling.hpp"

namespace flipnet {
namespace {

constexpr int kBoxMargin = 2;  // flipnet_rt.faces.paste.BOX_MARGIN
constexpr float kInf = std::numeric_limits<float>::infinity();

// Running minimum over [i - before, i + after] of `n` values `stride` apart, indices outside
// [0, n) ignored (cv::erode's default border), by van Herk / Gil-Werman blocks: 3 comparisons
// per value. `pad` is scratch of 3 * (n + before + after) floats.
void min_filter(const float* in, long stride, int n, int before, int after, float* out,
                long out_stride, float* pad) {
    const int k = before + after + 1, m = n + before + after;
    float* p = pad;
    float* g = pad + m;  // prefix minimum within each block of k
    float* h = pad + 2 * m;  // suffix minimum within each block of k
    for (int i = 0; i < m; ++i) {
        const int j = i - before;
        p[i] = (j >= 0 && j < n) ? in[j * stride] : kInf;
    }
    for (int start = 0; start < m; start += k) {
        const int end = std::min(start + k, m);
        g[start] = p[start];
        for (int i = start + 1; i < end; ++i) g[i] = std::min(g[i - 1], p[i]);
        h[end - 1] = p[end - 1];
        for (int i = end - 2; i >= start; --i) h[i] = std::min(h[i + 1], p[i]);
    }
    // Window of output i in padded indices: [i, i + k - 1].
    for (int i = 0; i < n; ++i) out[i * out_stride] = std::min(h[i], g[i + k - 1]);
}

// Reflect-101 index into [0, n).
inline int reflect101(int p, int n) {
    return detail::border_index(p, n, Border::Reflect101);
}

}  // namespace

std::vector<float> gaussian_taps(int n) {
    static const float small[4][7] = {
        {1.f},
        {0.25f, 0.5f, 0.25f},
        {0.0625f, 0.25f, 0.375f, 0.25f, 0.0625f},
        {0.03125f, 0.109375f, 0.21875f, 0.28125f, 0.21875f, 0.109375f, 0.03125f}};
    std::vector<float> taps(static_cast<size_t>(n));
    if (n <= 7) {
        std::copy(small[n / 2], small[n / 2] + n, taps.begin());
        return taps;
    }
    const double sigma = ((n - 1) * 0.5 - 1) * 0.3 + 0.8;
    const double scale = -0.5 / (sigma * sigma);
    std::vector<double> t(static_cast<size_t>(n));
    double sum = 0;
    for (int i = 0; i < n; ++i) {
        const double x = i - (n - 1) * 0.5;
        t[i] = std::exp(scale * x * x);
        sum += t[i];
    }
    for (int i = 0; i < n; ++i) taps[i] = static_cast<float>(t[i] / sum);
    return taps;
}

bool paste_box(const double inv[6], int size, int height, int width, Box* box) {
    const double cx[4] = {0, double(size), 0, double(size)};
    const double cy[4] = {0, 0, double(size), double(size)};
    double xmin = kInf, xmax = -kInf, ymin = kInf, ymax = -kInf;
    for (int k = 0; k < 4; ++k) {
        const double x = cx[k] * inv[0] + cy[k] * inv[1] + inv[2];
        const double y = cx[k] * inv[3] + cy[k] * inv[4] + inv[5];
        xmin = std::min(xmin, x), xmax = std::max(xmax, x);
        ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    if (!(std::isfinite(xmin) && std::isfinite(xmax) && std::isfinite(ymin) && std::isfinite(ymax)))
        return false;
    // Clamp in double before converting: a face far off the frame must not overflow an int.
    auto lo = [](double v, int limit) {
        const double r = std::max(std::floor(std::max(v, -1e9)) - kBoxMargin, 0.0);
        return static_cast<int>(std::min(r, static_cast<double>(limit)));
    };
    auto hi = [](double v, int limit) {
        const double r = std::ceil(std::min(v, 1e9)) + kBoxMargin + 1;
        return static_cast<int>(std::max(std::min(r, static_cast<double>(limit)), 0.0));
    };
    box->x0 = lo(xmin, width);
    box->y0 = lo(ymin, height);
    box->x1 = hi(xmax, width);
    box->y1 = hi(ymax, height);
    return box->x1 > box->x0 && box->y1 > box->y0;
}

namespace {

// Paste one face into the frame inside `box`.
void paste_one(std::uint8_t* frame, std::ptrdiff_t row_stride, const std::uint8_t* face, int size,
               const double inv_roi[6], Box box, int threads) {
    const int bw = box.x1 - box.x0, bh = box.y1 - box.y0;
    const long n = static_cast<long>(bw) * bh;
    // warpAffine(face, inv_roi) inverts inv_roi again: the ROI -> crop matrix in float32.
    const detail::Inverse to_crop = detail::float_inverse(inv_roi);
    const Frame src{face, size, size, static_cast<std::ptrdiff_t>(size) * 3};
    const std::uint8_t zero[3] = {0, 0, 0};

    // Seven planes from the calling thread's reused workspace (no page faults after the first call).
    float* const area = detail::workspace(static_cast<size_t>(9 * n));
    float* const warped = area;
    float* const mask = area + 3 * n;
    float* const mask_e = area + 4 * n;
    float* const rowmin = area + 5 * n;
    float* const center = area + 6 * n;
    float* const blur_rows = area + 7 * n;
    float* const soft = area + 8 * n;
    detail::parallel_for(bh, threads, [&](long lo, long hi) {
        detail::RowBuffer buf;
        buf.resize(bw);
        for (long y = lo; y < hi; ++y) {
            detail::sample_row(src, to_crop, static_cast<int>(y), bw, Border::Constant, zero, buf);
            float* wrow = warped + y * bw * 3;
            const std::uint8_t* u = buf.u.data();
            for (int x = 0; x < bw; ++x) {
                wrow[3 * x] = u[x];
                wrow[3 * x + 1] = u[bw + x];
                wrow[3 * x + 2] = u[2 * bw + x];
            }
            // The ones mask: the same taps over an all-ones S x S image, constant 0 border.
            const detail::RowStart row = detail::row_start(to_crop, static_cast<int>(y));
            float* mrow = mask + y * bw;
            for (int x = 0; x < bw; ++x) {
                const detail::Tap t = detail::tap(to_crop, row, x);
                if (static_cast<unsigned>(t.ix) < static_cast<unsigned>(size - 1) &&
                    static_cast<unsigned>(t.iy) < static_cast<unsigned>(size - 1)) {
                    mrow[x] = 1.0f;
                } else if (static_cast<unsigned>(t.ix + 1) >= static_cast<unsigned>(size + 1) ||
                           static_cast<unsigned>(t.iy + 1) >= static_cast<unsigned>(size + 1)) {
                    mrow[x] = 0.0f;
                } else {
                    auto in = [size](int px, int py) {
                        return (static_cast<unsigned>(px) < static_cast<unsigned>(size) &&
                                static_cast<unsigned>(py) < static_cast<unsigned>(size))
                                   ? 1.0f
                                   : 0.0f;
                    };
                    mrow[x] = detail::lerp2(in(t.ix, t.iy), in(t.ix + 1, t.iy), in(t.ix, t.iy + 1),
                                            in(t.ix + 1, t.iy + 1), t.fx, t.fy);
                }
            }
        }
    });

    // mask_e = erode(mask, 2x2): the minimum over (y-1..y, x-1..x), outside ignored.
    for (int y = 0; y < bh; ++y) {
        const float* a = mask + static_cast<long>(std::max(y - 1, 0)) * bw;
        const float* b = mask + static_cast<long>(y) * bw;
        float* d = mask_e + static_cast<long>(y) * bw;
        d[0] = std::min(a[0], b[0]);
        for (int x = 1; x < bw; ++x) d[x] = std::min(std::min(a[x - 1], a[x]), std::min(b[x - 1], b[x]));
    }
    double total = 0;
    for (long i = 0; i < n; ++i) total += mask_e[i];
    const int w = std::max(static_cast<int>(std::sqrt(total)) / 20, 1);

    // center = erode(mask_e, 2w x 2w), anchor (w, w): window [i - w, i + w - 1] on both axes.
    detail::parallel_for(bh, threads, [&](long lo, long hi) {
        std::vector<float> pad(static_cast<size_t>(3 * (bw + 2 * w)));
        for (long y = lo; y < hi; ++y)
            min_filter(mask_e + y * bw, 1, bw, w, w - 1, rowmin + y * bw, 1, pad.data());
    });
    detail::parallel_for(bw, threads, [&](long lo, long hi) {
        std::vector<float> pad(static_cast<size_t>(3 * (bh + 2 * w)));
        for (long x = lo; x < hi; ++x)
            min_filter(rowmin + x, bw, bh, w, w - 1, center + x, bw, pad.data());
    });

    // soft = GaussianBlur(center, 2w + 1): rows, then columns, REFLECT_101 at the box's edges.
    const std::vector<float> k = gaussian_taps(2 * w + 1);
    const float* kc = k.data() + w;  // kc[j] = tap at offset j (symmetric)
    detail::parallel_for(bh, threads, [&](long lo, long hi) {
        std::vector<float> pad(static_cast<size_t>(bw + 2 * w));
        for (long y = lo; y < hi; ++y) {
            const float* s = center + y * bw;
            for (int i = 0; i < bw + 2 * w; ++i) pad[i] = s[reflect101(i - w, bw)];
            float* d = blur_rows + y * bw;
            const float* p = pad.data() + w;
            for (int x = 0; x < bw; ++x) d[x] = kc[0] * p[x];
            for (int j = 1; j <= w; ++j)
                for (int x = 0; x < bw; ++x) d[x] += kc[j] * (p[x - j] + p[x + j]);
        }
    });
    detail::parallel_for(bh, threads, [&](long lo, long hi) {
        for (long y = lo; y < hi; ++y) {
            float* d = soft + y * bw;
            const float* c = blur_rows + y * bw;
            for (int x = 0; x < bw; ++x) d[x] = kc[0] * c[x];
            for (int j = 1; j <= w; ++j) {
                const float* a = blur_rows + static_cast<long>(reflect101(static_cast<int>(y) - j, bh)) * bw;
                const float* b = blur_rows + static_cast<long>(reflect101(static_cast<int>(y) + j, bh)) * bw;
                for (int x = 0; x < bw; ++x) d[x] += kc[j] * (a[x] + b[x]);
            }
        }
    });

    // Blend: cv2.blendLinear(face, frame, soft * mask_e, 1 - soft), everywhere in the box (where
    // soft is 0 the weights (0, 1) give the frame's own value back).
    detail::parallel_for(bh, threads, [&](long lo, long hi) {
        for (long y = lo; y < hi; ++y) {
            std::uint8_t* f = frame + (box.y0 + y) * row_stride + box.x0 * 3;
            const float* s = soft + y * bw;
            const float* me = mask_e + y * bw;
            const float* wv = warped + y * bw * 3;
            for (int x = 0; x < bw; ++x) {
                const float w1 = s[x] * me[x], w2 = 1.0f - s[x];
                const float den = w1 + w2 + 1e-5f;
                for (int c = 0; c < 3; ++c) {
                    const float num = wv[3 * x + c] * w1 + static_cast<float>(f[3 * x + c]) * w2;
                    f[3 * x + c] = detail::to_u8(num / den);
                }
            }
        }
    });
}

}  // namespace

void paste_faces(std::uint8_t* frame, int height, int width, std::ptrdiff_t row_stride,
                 const std::uint8_t* faces, int count, int size, const double* matrices,
                 int threads) {
    const long face_bytes = static_cast<long>(size) * size * 3;
    for (int i = 0; i < count; ++i) {
        double inv[6];
        invert_affine(matrices + 6 * i, inv);
        Box box{};
        if (!paste_box(inv, size, height, width, &box)) continue;
        inv[2] -= box.x0;
        inv[5] -= box.y0;
        paste_one(frame, row_stride, faces + i * face_bytes, size, inv, box, threads);
    }
}

}  // namespace flipnet
