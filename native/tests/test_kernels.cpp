// Unit tests of the CPU kernels: exact expectations worked out by hand (borders, inverse matrix,
// fp16 rounding, the [1, 2, 1] / 4 blur), independent of the Python references that
// tests/native/ compares against. Prints each failed check and exits 1.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "flipnet/kernels.hpp"
#include "half.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        ++failures;
        std::printf("FAIL: %s\n", what.c_str());
    }
}

bool near(double a, double b, double tol) {
    return std::fabs(a - b) <= tol;
}

// A width x height RGB frame whose R channel is 10 * x + y (x < 25), G = 2 * R mod 256, B = 7.
std::vector<std::uint8_t> ramp_frame(int height, int width) {
    std::vector<std::uint8_t> f(static_cast<size_t>(height * width * 3));
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
            std::uint8_t* p = &f[static_cast<size_t>((y * width + x) * 3)];
            p[0] = static_cast<std::uint8_t>(10 * x + y);
            p[1] = static_cast<std::uint8_t>((2 * (10 * x + y)) % 256);
            p[2] = 7;
        }
    return f;
}

void test_invert_affine() {
    const double m[6] = {2.0, 0.0, 3.0, 0.0, 4.0, -8.0};
    double inv[6];
    flipnet::invert_affine(m, inv);
    const double want[6] = {0.5, 0.0, -1.5, 0.0, 0.25, 2.0};
    for (int k = 0; k < 6; ++k) check(near(inv[k], want[k], 1e-15), "invert_affine entry");
    const double singular[6] = {1, 2, 3, 2, 4, 6};
    flipnet::invert_affine(singular, inv);
    check(inv[0] == 0 && inv[4] == 0 && inv[2] == 0, "singular matrix inverts to zeros");
}

void test_identity_warp_is_exact() {
    const int h = 5, w = 6;
    auto f = ramp_frame(h, w);
    const flipnet::Frame frame{f.data(), h, w, w * 3};
    const double identity[6] = {1, 0, 0, 0, 1, 0};
    const std::uint8_t bval[3] = {0, 0, 0};
    std::vector<std::uint8_t> out(f.size());
    flipnet::warp_u8(frame, identity, 1, h, w, flipnet::Border::Reflect101, bval, out.data(), 1);
    check(out == f, "identity warp returns the frame");
}

// Shift right by 2 (crop x = frame x + 2): crop pixels 0 and 1 come from frame x = -2 and -1.
void test_borders() {
    const int h = 1, w = 4;
    std::vector<std::uint8_t> f(12);
    for (int x = 0; x < 4; ++x)
        for (int c = 0; c < 3; ++c) f[static_cast<size_t>(3 * x + c)] = static_cast<std::uint8_t>(10 * (x + 1));
    const flipnet::Frame frame{f.data(), h, w, w * 3};
    const double shift[6] = {1, 0, 2, 0, 1, 0};  // frame -> crop: x' = x + 2
    const std::uint8_t bval[3] = {99, 98, 97};
    struct Case {
        flipnet::Border border;
        int want0, want1;  // R of crop pixels 0 and 1 (frame x = -2, -1); a b c d = 10 20 30 40
    };
    const Case cases[] = {
        {flipnet::Border::Constant, 99, 99},
        {flipnet::Border::Replicate, 10, 10},
        {flipnet::Border::Reflect, 20, 10},     // ba|abcd
        {flipnet::Border::Reflect101, 30, 20},  // cb|abcd
    };
    for (const Case& c : cases) {
        std::vector<std::uint8_t> out(12);
        flipnet::warp_u8(frame, shift, 1, h, w, c.border, bval, out.data(), 1);
        const std::string name = "border " + std::to_string(static_cast<int>(c.border));
        check(out[0] == c.want0, name + ": crop x=0 got " + std::to_string(out[0]));
        check(out[3] == c.want1, name + ": crop x=1 got " + std::to_string(out[3]));
        check(out[6] == 10 && out[9] == 20, name + ": crop x=2,3 are frame x=0,1");
    }
}

// Half-pixel shift: the mean of two neighbours, rounded half to even like cv2.warpAffine.
void test_bilinear_half_pixel() {
    const int h = 2, w = 3;
    std::vector<std::uint8_t> f = {10, 0, 0, 21, 0, 0, 40, 0, 0, 10, 0, 0, 21, 0, 0, 40, 0, 0};
    const flipnet::Frame frame{f.data(), h, w, w * 3};
    const double shift[6] = {1, 0, -0.5, 0, 1, 0};  // crop x = frame x - 0.5
    const std::uint8_t bval[3] = {0, 0, 0};
    std::vector<std::uint8_t> out(static_cast<size_t>(h * 2 * 3));
    flipnet::warp_u8(frame, shift, 1, h, 2, flipnet::Border::Replicate, bval, out.data(), 1);
    check(out[0] == 16, "(10 + 21) / 2 = 15.5 rounds to even 16, got " + std::to_string(out[0]));
    check(out[3] == 30, "(21 + 40) / 2 = 30.5 rounds to even 30, got " + std::to_string(out[3]));
}

void test_warp_crop_layout_and_dtypes() {
    const int h = 3, w = 4;
    auto f = ramp_frame(h, w);
    const flipnet::Frame frame{f.data(), h, w, w * 3};
    const double mats[12] = {1, 0, 0, 0, 1, 0, 1, 0, -1, 0, 1, 0};  // identity; shift left by 1
    const std::uint8_t bval[3] = {0, 0, 0};
    std::vector<float> out(static_cast<size_t>(2 * 3 * h * w));
    flipnet::warp_crop(frame, mats, 2, h, w, flipnet::Border::Replicate, bval, out.data(),
                       flipnet::DType::Float32, 2);
    std::vector<std::uint16_t> half(out.size());
    flipnet::warp_crop(frame, mats, 2, h, w, flipnet::Border::Replicate, bval, half.data(),
                       flipnet::DType::Float16, 2);
    bool ok = true, half_ok = true;
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) {
                const size_t i0 = static_cast<size_t>((c * h + y) * w + x);
                const size_t i1 = static_cast<size_t>(((3 + c) * h + y) * w + x);
                const int v0 = f[static_cast<size_t>((y * w + x) * 3 + c)];
                const int sx = x + 1 < w ? x + 1 : w - 1;
                const int v1 = f[static_cast<size_t>((y * w + sx) * 3 + c)];
                ok &= out[i0] == static_cast<float>(v0) / 127.5f - 1.0f;
                ok &= out[i1] == static_cast<float>(v1) / 127.5f - 1.0f;
                half_ok &= half[i0] == flipnet::detail::to_half(out[i0]);
            }
    check(ok, "warp_crop writes NCHW v / 127.5 - 1 per face");
    check(half_ok, "float16 output is the rounded float32 output");
}

void test_half_rounding() {
    using flipnet::detail::to_half;
    check(to_half(1.0f) == 0x3c00, "half(1)");
    check(to_half(-1.0f) == 0xbc00, "half(-1)");
    check(to_half(0.5f) == 0x3800, "half(0.5)");
    check(to_half(65504.0f) == 0x7bff, "half(max)");
    check(to_half(65520.0f) == 0x7c00, "half(65520) overflows to inf");
    check(to_half(std::ldexp(1.0f, -24)) == 0x0001, "smallest subnormal");
    check(to_half(std::ldexp(1.0f, -25)) == 0x0000, "half of the smallest subnormal ties to 0");
    check(to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00, "tie at 1 + 2^-11 rounds to even");
    check(to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02, "tie at 1 + 3*2^-11 rounds up");
    check(to_half(-0.0f) == 0x8000, "negative zero");
}

void test_wavelet() {
    // One level on a 5x5 delta: the outer product of [1, 2, 1] / 4 around the centre.
    std::vector<float> delta(25, 0.0f), low(25);
    delta[12] = 16.0f;
    flipnet::wavelet_low(delta.data(), low.data(), 1, 5, 5, 1, 1);
    const float k[3] = {1, 2, 1};
    bool ok = true;
    for (int y = 0; y < 5; ++y)
        for (int x = 0; x < 5; ++x) {
            const bool in = y >= 1 && y <= 3 && x >= 1 && x <= 3;
            const float want = in ? k[y - 1] * k[x - 1] : 0.0f;
            ok &= low[static_cast<size_t>(y * 5 + x)] == want;
        }
    check(ok, "one level of a delta is the [1, 2, 1] / 4 outer product");

    // A uniform cast is removed: image = reference + 0.25 everywhere.
    const int h = 9, w = 7, levels = 3;
    std::vector<float> ref(static_cast<size_t>(2 * h * w)), img(ref.size()), out(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
        ref[i] = std::sin(0.37f * static_cast<float>(i)) * 0.5f;
        img[i] = ref[i] + 0.25f;
    }
    flipnet::wavelet_color_fix(img.data(), ref.data(), out.data(), 2, h, w, levels, 2);
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::fmax(worst, std::fabs(out[i] - ref[i]));
    check(worst < 1e-6, "uniform cast removed (max error " + std::to_string(worst) + ")");

    // levels = 0 copies; out may alias image.
    std::vector<float> same = img;
    flipnet::wavelet_color_fix(same.data(), ref.data(), same.data(), 2, h, w, 0, 1);
    check(same == img, "levels 0 leaves the image unchanged");
    flipnet::wavelet_color_fix(same.data(), ref.data(), same.data(), 2, h, w, levels, 1);
    check(same == out, "in place equals out of place");
}

// A 40x40 face translated into a 100x80 frame (crop = frame shifted by (-30, -20)): pixels outside
// the paste box (the crop square + 2 px margin, +1 on the far side) keep their values, the
// centre of the face (soft mask 1) takes the face's values, a face entirely off the frame
// changes nothing.
void test_paste() {
    const int fh = 80, fw = 100, s = 40;
    std::vector<std::uint8_t> frame(static_cast<size_t>(fh * fw * 3));
    for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<std::uint8_t>((i * 7) % 251);
    std::vector<std::uint8_t> face(static_cast<size_t>(2 * s * s * 3), 200);
    const double mats[12] = {1, 0, -30, 0, 1, -20, 1, 0, 500, 0, 1, 500};
    std::vector<std::uint8_t> out = frame;
    flipnet::paste_faces(out.data(), fh, fw, fw * 3, face.data(), 2, s, mats, 2);
    // Box: x in [30 - 2, 70 + 2 + 1) = [28, 73), y in [18, 63).
    bool outside_same = true, centre_face = true, inside_changed = false;
    for (int y = 0; y < fh; ++y)
        for (int x = 0; x < fw; ++x)
            for (int c = 0; c < 3; ++c) {
                const size_t i = static_cast<size_t>((y * fw + x) * 3 + c);
                const bool in_box = x >= 28 && x < 73 && y >= 18 && y < 63;
                if (!in_box) outside_same &= out[i] == frame[i];
                if (x >= 40 && x < 60 && y >= 30 && y < 50) centre_face &= out[i] == 200;
                if (in_box && out[i] != frame[i]) inside_changed = true;
            }
    check(outside_same, "paste leaves pixels outside the box bit for bit");
    check(centre_face, "paste writes the face where the soft mask is 1");
    check(inside_changed, "paste changes the box");
}

}  // namespace

int main() {
    test_invert_affine();
    test_identity_warp_is_exact();
    test_borders();
    test_bilinear_half_pixel();
    test_warp_crop_layout_and_dtypes();
    test_half_rounding();
    test_wavelet();
    test_paste();
    if (failures) {
        std::printf("%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all native kernel checks passed\n");
    return 0;
}
