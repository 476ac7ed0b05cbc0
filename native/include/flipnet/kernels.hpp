// CPU kernels for the per-face image work around the engine (DESIGN §8).
//
// Every kernel is batched over faces and takes plain pointers, so the same functions serve the
// Python module (native/python/module.cpp) and the C++ tests (native/tests/). The Python/OpenCV
// references they match live in flipnet_rt/faces/align.py, flipnet_rt/faces/paste.py and
// flipnet_rt/imaging/colour.py.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace flipnet {

// Border rules of the warp, numbered as OpenCV's cv::BorderTypes so Python passes cv2's values.
enum class Border : int {
    Constant = 0,    // iiiiii|abcdefgh|iiiiiii, i = the border value
    Replicate = 1,   // aaaaaa|abcdefgh|hhhhhhh
    Reflect = 2,     // fedcba|abcdefgh|hgfedcb
    Reflect101 = 4,  // gfedcb|abcdefgh|gfedcba
};

// Element type of the engine input written by warp_crop.
enum class DType : int { Float32 = 0, Float16 = 1 };

// A uint8 RGB frame, height x width x 3, rows `row_stride` bytes apart (pixels contiguous).
struct Frame {
    const std::uint8_t* data;
    int height;
    int width;
    std::ptrdiff_t row_stride;
};

// True when `code` is one of the Border values above.
bool valid_border(int code);

// Affine warp + crop of `count` faces straight into the engine's input layout.
//
// For face i and crop pixel (x, y), the source point is inverse(M_i) * (x, y, 1), where M_i is the
// frame -> crop matrix (`matrices + 6 * i`, row-major 2x3, as given to cv2.warpAffine). Sampling is
// bilinear with OpenCV's (>= 4.11) float arithmetic, rounded to uint8 like cv2.warpAffine, then
// mapped to [-1, 1] as flipnet_rt.imaging.tensor.to_float does (v / 127.5 - 1).
//
// out: [count, 3, out_h, out_w] float32 or float16 (`dtype`), C-contiguous.
// threads: worker threads (0 = all hardware threads).
void warp_crop(const Frame& frame, const double* matrices, int count, int out_h, int out_w,
               Border border, const std::uint8_t border_value[3], void* out, DType dtype,
               int threads);

// The same warp into uint8 HWC crops ([count, out_h, out_w, 3]): the cv2.warpAffine equivalent,
// used by the tests and by paste_faces.
void warp_u8(const Frame& frame, const double* matrices, int count, int out_h, int out_w,
             Border border, const std::uint8_t border_value[3], std::uint8_t* out, int threads);

// Paste `count` restored faces (uint8 [count, size, size, 3]) back into the uint8 HWC frame
// (height x width x 3, rows `row_stride` bytes apart), in place and in order, through facexlib's
// feathered mask computed inside each face's box only (flipnet_rt.faces.paste.paste_faces).
// matrices: [count, 2, 3] frame -> crop, the ones the crops were warped with. Pixels outside every
// face's feathered mask keep their values bit for bit.
void paste_faces(std::uint8_t* frame, int height, int width, std::ptrdiff_t row_stride,
                 const std::uint8_t* faces, int count, int size, const double* matrices,
                 int threads);

// The region [x0, x1) x [y0, y1) a crop of side `size` pastes into: the crop square's corners
// mapped by `inv` (crop -> frame), widened by 2 px (3 on the far side) and clipped to the frame
// (flipnet_rt.faces.paste.paste_box). False when it misses the frame.
struct Box {
    int x0, y0, x1, y1;
};
bool paste_box(const double inv[6], int size, int height, int width, Box* box);

// OpenCV's Gaussian taps for an odd size n and sigma <= 0 (cv::getGaussianKernel): the fixed
// kernels up to 7, else sigma = 0.3 * ((n - 1) / 2 - 1) + 0.8, exp() taps normalised in double.
std::vector<float> gaussian_taps(int n);

// Inverse of a 2x3 affine matrix (cv::invertAffineTransform; a singular matrix gives zeros).
void invert_affine(const double m[6], double inv[6]);

// StableSR's wavelet colour fix: image - low(image) + low(reference), `levels` à trous levels of a
// [1, 2, 1] / 4 blur dilated 2^level, edges replicated (flipnet_rt.imaging.colour.wavelet_color_fix).
// image, reference, out: [planes, height, width] float32 (planes = batch * channels); out may
// alias image.
void wavelet_color_fix(const float* image, const float* reference, float* out, int planes,
                       int height, int width, int levels, int threads);

// The low band alone (the blur above applied `levels` times): [planes, height, width] float32.
void wavelet_low(const float* in, float* out, int planes, int height, int width, int levels,
                 int threads);

}  // namespace flipnet
