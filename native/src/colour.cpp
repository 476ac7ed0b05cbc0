// StableSR's wavelet colour fix (flipnet_rt.imaging.colour.wavelet_color_fix), one plane at a time.
//
// Each level blurs rows then columns with [1, 2, 1] / 4 taps `r = 2^level` pixels apart, edges
// replicated (numpy's pad mode "edge" is a clamp of the index). The sums are evaluated in the
// reference's order, 0.25 * a + 0.5 * b + 0.25 * c in float32, so results match it bit for bit.
#include <algorithm>
#include <vector>

#include "flipnet/kernels.hpp"
#include "parallel.hpp"

namespace flipnet {
namespace {

inline float tap(float a, float b, float c) {
    return 0.25f * a + 0.5f * b + 0.25f * c;
}

// One level on one plane: src -> dst (may not alias), `row` is a width-sized scratch row.
void blur_level(const float* src, float* dst, int height, int width, int r, float* tmp) {
    // Horizontal pass into tmp (height x width).
    for (int y = 0; y < height; ++y) {
        const float* s = src + static_cast<long>(y) * width;
        float* t = tmp + static_cast<long>(y) * width;
        const int lo = std::min(r, width), hi = std::max(lo, width - r);
        for (int x = 0; x < lo; ++x)
            t[x] = tap(s[std::max(x - r, 0)], s[x], s[std::min(x + r, width - 1)]);
        for (int x = lo; x < hi; ++x) t[x] = tap(s[x - r], s[x], s[x + r]);
        for (int x = hi; x < width; ++x)
            t[x] = tap(s[std::max(x - r, 0)], s[x], s[std::min(x + r, width - 1)]);
    }
    // Vertical pass, row by row (contiguous inner loop).
    for (int y = 0; y < height; ++y) {
        const float* a = tmp + static_cast<long>(std::max(y - r, 0)) * width;
        const float* b = tmp + static_cast<long>(y) * width;
        const float* c = tmp + static_cast<long>(std::min(y + r, height - 1)) * width;
        float* d = dst + static_cast<long>(y) * width;
        for (int x = 0; x < width; ++x) d[x] = tap(a[x], b[x], c[x]);
    }
}

// The low band of one plane into `out` (scratch: two planes).
void low_plane(const float* in, float* out, int height, int width, int levels, float* scratch) {
    const long n = static_cast<long>(height) * width;
    float* tmp = scratch;
    float* ping = scratch + n;
    const float* src = in;
    for (int level = 0; level < levels; ++level) {
        // Alternate so the last level lands in `out`.
        float* dst = ((levels - 1 - level) % 2 == 0) ? out : ping;
        if (dst == src) dst = (dst == out) ? ping : out;
        blur_level(src, dst, height, width, 1 << level, tmp);
        src = dst;
    }
    if (src != out) std::copy(src, src + n, out);
}

}  // namespace

void wavelet_low(const float* in, float* out, int planes, int height, int width, int levels,
                 int threads) {
    const long n = static_cast<long>(height) * width;
    const int workers = detail::worker_count(threads, planes);
    float* const area = detail::workspace(static_cast<size_t>(workers * 2 * n));
    const long chunk = (planes + workers - 1) / workers;
    detail::parallel_for(planes, workers, [&](long lo, long hi) {
        float* scratch = area + (lo / chunk) * 2 * n;
        for (long p = lo; p < hi; ++p) {
            if (levels == 0)
                std::copy(in + p * n, in + (p + 1) * n, out + p * n);
            else
                low_plane(in + p * n, out + p * n, height, width, levels, scratch);
        }
    });
}

void wavelet_color_fix(const float* image, const float* reference, float* out, int planes,
                       int height, int width, int levels, int threads) {
    const long n = static_cast<long>(height) * width;
    const int workers = detail::worker_count(threads, planes);
    float* const area = detail::workspace(static_cast<size_t>(workers * 4 * n));
    const long chunk = (planes + workers - 1) / workers;
    detail::parallel_for(planes, workers, [&](long lo, long hi) {
        float* scratch = area + (lo / chunk) * 4 * n;  // this worker's 4 planes
        float* low_image = scratch + 2 * n;
        float* low_ref = scratch + 3 * n;
        for (long p = lo; p < hi; ++p) {
            const float* x = image + p * n;
            float* o = out + p * n;
            if (levels == 0) {
                if (o != x) std::copy(x, x + n, o);
                continue;
            }
            low_plane(x, low_image, height, width, levels, scratch);
            low_plane(reference + p * n, low_ref, height, width, levels, scratch);
            // x - low(x) + low(ref), in the reference's order.
            for (long i = 0; i < n; ++i) o[i] = (x[i] - low_image[i]) + low_ref[i];
        }
    });
}

}  // namespace flipnet
