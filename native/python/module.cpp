// flipnet_rt._native: the Python module over the native kernels (nanobind).
//
// No array argument is ever converted (.noconvert() on every one): a non-contiguous or mistyped
// array is a TypeError, not a temporary copy. For `out` and in-place arrays a copy would take the
// result; for the CUDA functions' inputs it would be freed on return while the kernel, queued on
// another stream, may still read it. The CPU functions run synchronously, so a copy there would be
// harmless; they refuse it too, for one rule (flipnet_rt/native.py passes C-contiguous arrays of
// the right dtype). CPU functions take numpy arrays; CUDA functions (built with FLIPNET_CUDA) take device arrays
// through DLPack (CuPy, torch, ...) and a raw cudaStream_t handle. Every function checks shapes
// and dtypes and raises ValueError naming the argument; the Python wrapper flipnet_rt/native.py
// is the public entry point.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "flipnet/kernels.hpp"
#ifdef FLIPNET_WITH_CUDA
#include "flipnet/cuda_kernels.hpp"
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using CpuFrame = nb::ndarray<const std::uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cpu>;
using CpuMatrices = nb::ndarray<const double, nb::ndim<3>, nb::c_contig, nb::device::cpu>;
using CpuAny4 = nb::ndarray<nb::ndim<4>, nb::c_contig, nb::device::cpu>;
using CpuF32 = nb::ndarray<float, nb::ndim<4>, nb::c_contig, nb::device::cpu>;
using CpuConstF32 = nb::ndarray<const float, nb::ndim<4>, nb::c_contig, nb::device::cpu>;
using CpuU8Out = nb::ndarray<std::uint8_t, nb::ndim<4>, nb::c_contig, nb::device::cpu>;

[[noreturn]] void fail(const std::string& what) {
    throw nb::value_error(what.c_str());
}

// The colour fix's dilation is 1 << level: past 30 it leaves an int (flipnet_rt.imaging.colour.MAX_LEVELS).
void check_levels(int levels) {
    if (levels < 0 || levels > 30)
        fail("levels: must be in [0, 30], got " + std::to_string(levels));
}

std::string shape_str(size_t ndim, const int64_t* shape) {
    std::string s = "(";
    for (size_t i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + ")";
}

flipnet::Border check_border(int border) {
    if (!flipnet::valid_border(border))
        fail("border: " + std::to_string(border) +
             " is not a supported cv2 border (BORDER_CONSTANT=0, BORDER_REPLICATE=1, "
             "BORDER_REFLECT=2, BORDER_REFLECT_101=4)");
    return static_cast<flipnet::Border>(border);
}

flipnet::DType out_dtype(const nb::dlpack::dtype& dt, const char* name) {
    if (dt == nb::dtype<float>()) return flipnet::DType::Float32;
    if (dt.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Float) && dt.bits == 16 &&
        dt.lanes == 1)
        return flipnet::DType::Float16;
    fail(std::string(name) + ": must be float32 or float16");
}

// [N, 2, 3] float64 frame -> crop matrices; returns N.
int check_matrices(const CpuMatrices& m) {
    if (m.shape(1) != 2 || m.shape(2) != 3)
        fail("matrices: expected [N, 2, 3] float64, got " + shape_str(3, m.shape_ptr()));
    return static_cast<int>(m.shape(0));
}

flipnet::Frame as_frame(const CpuFrame& f) {
    if (f.shape(2) != 3)
        fail("frame: expected uint8 [H, W, 3], got " + shape_str(3, f.shape_ptr()));
    if (f.shape(0) < 1 || f.shape(1) < 1) fail("frame: empty");
    return {f.data(), static_cast<int>(f.shape(0)), static_cast<int>(f.shape(1)),
            static_cast<std::ptrdiff_t>(f.shape(1) * 3)};
}

void warp_crop(const CpuFrame& frame, const CpuMatrices& matrices, CpuAny4 out, int border,
               std::array<std::uint8_t, 3> border_value, int threads) {
    const flipnet::Frame f = as_frame(frame);
    const int n = check_matrices(matrices);
    if (out.shape(0) != static_cast<size_t>(n) || out.shape(1) != 3)
        fail("out: expected [" + std::to_string(n) + ", 3, h, w], got " +
             shape_str(4, out.shape_ptr()));
    const flipnet::DType dt = out_dtype(out.dtype(), "out");
    const flipnet::Border b = check_border(border);
    nb::gil_scoped_release release;
    flipnet::warp_crop(f, matrices.data(), n, static_cast<int>(out.shape(2)),
                       static_cast<int>(out.shape(3)), b, border_value.data(), out.data(), dt,
                       threads);
}

void warp_u8(const CpuFrame& frame, const CpuMatrices& matrices, CpuU8Out out, int border,
             std::array<std::uint8_t, 3> border_value, int threads) {
    const flipnet::Frame f = as_frame(frame);
    const int n = check_matrices(matrices);
    if (out.shape(0) != static_cast<size_t>(n) || out.shape(3) != 3)
        fail("out: expected [" + std::to_string(n) + ", h, w, 3] uint8, got " +
             shape_str(4, out.shape_ptr()));
    const flipnet::Border b = check_border(border);
    nb::gil_scoped_release release;
    flipnet::warp_u8(f, matrices.data(), n, static_cast<int>(out.shape(1)),
                     static_cast<int>(out.shape(2)), b, border_value.data(), out.data(), threads);
}

using CpuFrameOut = nb::ndarray<std::uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cpu>;
using CpuFaces = nb::ndarray<const std::uint8_t, nb::ndim<4>, nb::c_contig, nb::device::cpu>;

void paste_faces(CpuFrameOut frame, const CpuFaces& faces, const CpuMatrices& matrices,
                 int threads) {
    if (frame.shape(2) != 3 || frame.shape(0) < 1 || frame.shape(1) < 1)
        fail("frame: expected uint8 [H, W, 3], got " + shape_str(3, frame.shape_ptr()));
    const int n = check_matrices(matrices);
    if (faces.shape(0) != static_cast<size_t>(n) || faces.shape(1) != faces.shape(2) ||
        faces.shape(3) != 3 || faces.shape(1) < 2)
        fail("faces: expected uint8 [" + std::to_string(n) + ", S, S, 3] (S >= 2), got " +
             shape_str(4, faces.shape_ptr()));
    nb::gil_scoped_release release;
    flipnet::paste_faces(frame.data(), static_cast<int>(frame.shape(0)),
                         static_cast<int>(frame.shape(1)),
                         static_cast<std::ptrdiff_t>(frame.shape(1) * 3), faces.data(), n,
                         static_cast<int>(faces.shape(1)), matrices.data(), threads);
}

void wavelet_color_fix(const CpuConstF32& image, const CpuConstF32& reference, CpuF32 out,
                       int levels, int threads) {
    for (size_t k = 0; k < 4; ++k) {
        if (image.shape(k) != reference.shape(k) || image.shape(k) != out.shape(k))
            fail("wavelet_color_fix: image, reference and out must share one [B, C, H, W] "
                 "shape, got " + shape_str(4, image.shape_ptr()) + ", " +
                 shape_str(4, reference.shape_ptr()) + " and " + shape_str(4, out.shape_ptr()));
    }
    check_levels(levels);
    const int planes = static_cast<int>(image.shape(0) * image.shape(1));
    nb::gil_scoped_release release;
    flipnet::wavelet_color_fix(image.data(), reference.data(), out.data(), planes,
                               static_cast<int>(image.shape(2)), static_cast<int>(image.shape(3)),
                               levels, threads);
}

#ifdef FLIPNET_WITH_CUDA
// Device arrays through DLPack (CuPy, torch, ...); `stream` is a raw cudaStream_t (0 = default).
using CudaFrame = nb::ndarray<std::uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cuda>;
using CudaAny4 = nb::ndarray<nb::ndim<4>, nb::c_contig, nb::device::cuda>;
using CudaU8x4 = nb::ndarray<const std::uint8_t, nb::ndim<4>, nb::c_contig, nb::device::cuda>;
using CudaF32 = nb::ndarray<float, nb::ndim<4>, nb::c_contig, nb::device::cuda>;
using CudaConstF32 = nb::ndarray<const float, nb::ndim<4>, nb::c_contig, nb::device::cuda>;

void cuda_check(int code, const char* what) {
    if (code != 0)
        throw std::runtime_error(std::string(what) + ": CUDA error " + std::to_string(code) + " (" +
                                 flipnet::cuda::error_string(code) + ")");
}

void cuda_same_device(int a, int b, const char* what) {
    if (a != b) fail(std::string(what) + ": arrays live on different GPUs (" + std::to_string(a) +
                     " and " + std::to_string(b) + ")");
}

void warp_crop_cuda(const CudaFrame& frame, const CpuMatrices& matrices, CudaAny4 out, int border,
                    std::array<std::uint8_t, 3> border_value, std::uintptr_t stream) {
    if (frame.shape(2) != 3 || frame.shape(0) < 1 || frame.shape(1) < 1)
        fail("frame: expected uint8 [H, W, 3], got " + shape_str(3, frame.shape_ptr()));
    const int n = check_matrices(matrices);
    if (out.shape(0) != static_cast<size_t>(n) || out.shape(1) != 3)
        fail("out: expected [" + std::to_string(n) + ", 3, h, w], got " +
             shape_str(4, out.shape_ptr()));
    cuda_same_device(frame.device_id(), out.device_id(), "warp_crop_cuda");
    const flipnet::DType dt = out_dtype(out.dtype(), "out");
    const flipnet::Border b = check_border(border);
    const flipnet::Frame f{frame.data(), static_cast<int>(frame.shape(0)),
                           static_cast<int>(frame.shape(1)),
                           static_cast<std::ptrdiff_t>(frame.shape(1) * 3)};
    cuda_check(flipnet::cuda::warp_crop(f, matrices.data(), n, static_cast<int>(out.shape(2)),
                                        static_cast<int>(out.shape(3)), b, border_value.data(),
                                        out.data(), dt, reinterpret_cast<void*>(stream)),
               "warp_crop_cuda");
}

void paste_faces_cuda(CudaFrame frame, const CudaU8x4& faces, const CpuMatrices& matrices,
                      std::uintptr_t stream) {
    if (frame.shape(2) != 3 || frame.shape(0) < 1 || frame.shape(1) < 1)
        fail("frame: expected uint8 [H, W, 3], got " + shape_str(3, frame.shape_ptr()));
    const int n = check_matrices(matrices);
    if (faces.shape(0) != static_cast<size_t>(n) || faces.shape(1) != faces.shape(2) ||
        faces.shape(3) != 3 || faces.shape(1) < 2)
        fail("faces: expected uint8 [" + std::to_string(n) + ", S, S, 3] (S >= 2), got " +
             shape_str(4, faces.shape_ptr()));
    cuda_same_device(frame.device_id(), faces.device_id(), "paste_faces_cuda");
    cuda_check(flipnet::cuda::paste_faces(frame.data(), static_cast<int>(frame.shape(0)),
                                          static_cast<int>(frame.shape(1)),
                                          static_cast<std::ptrdiff_t>(frame.shape(1) * 3),
                                          faces.data(), n, static_cast<int>(faces.shape(1)),
                                          matrices.data(), reinterpret_cast<void*>(stream)),
               "paste_faces_cuda");
}

void wavelet_color_fix_cuda(const CudaConstF32& image, const CudaConstF32& reference, CudaF32 out,
                            int levels, std::uintptr_t stream) {
    for (size_t k = 0; k < 4; ++k) {
        if (image.shape(k) != reference.shape(k) || image.shape(k) != out.shape(k))
            fail("wavelet_color_fix_cuda: image, reference and out must share one [B, C, H, W] "
                 "shape");
    }
    check_levels(levels);
    cuda_same_device(image.device_id(), out.device_id(), "wavelet_color_fix_cuda");
    cuda_same_device(reference.device_id(), out.device_id(), "wavelet_color_fix_cuda");
    const int planes = static_cast<int>(image.shape(0) * image.shape(1));
    cuda_check(flipnet::cuda::wavelet_color_fix(image.data(), reference.data(), out.data(), planes,
                                                static_cast<int>(image.shape(2)),
                                                static_cast<int>(image.shape(3)), levels,
                                                reinterpret_cast<void*>(stream)),
               "wavelet_color_fix_cuda");
}
#endif

}  // namespace

NB_MODULE(_native, m) {
    m.doc() = "flipnet-rt native kernels (C++ CPU, optional CUDA); use flipnet_rt.native.";
#ifdef FLIPNET_WITH_CUDA
    m.attr("cuda") = true;
    m.attr("cuda_architectures") = FLIPNET_CUDA_ARCHITECTURES;
#else
    m.attr("cuda") = false;
    m.attr("cuda_architectures") = "";
#endif
    m.def("warp_crop", &warp_crop, "frame"_a.noconvert(), "matrices"_a.noconvert(),
          "out"_a.noconvert(), "border"_a, "border_value"_a, "threads"_a = 0,
          "Warp faces of uint8 [H, W, 3] `frame` by the frame->crop `matrices` [N, 2, 3] float64 "
          "into `out` [N, 3, h, w] float32/float16 in [-1, 1] (bilinear, cv2 border code).");
    m.def("warp_u8", &warp_u8, "frame"_a.noconvert(), "matrices"_a.noconvert(),
          "out"_a.noconvert(), "border"_a, "border_value"_a, "threads"_a = 0,
          "cv2.warpAffine (INTER_LINEAR) of N faces into uint8 `out` [N, h, w, 3].");
    m.def("paste_faces", &paste_faces, "frame"_a.noconvert(), "faces"_a.noconvert(),
          "matrices"_a.noconvert(), "threads"_a = 0,
          "Paste uint8 [N, S, S, 3] `faces` into uint8 [H, W, 3] `frame` in place, in order, "
          "through the feathered mask inside each face's box (frame->crop `matrices`).");
    m.def("wavelet_color_fix", &wavelet_color_fix, "image"_a.noconvert(),
          "reference"_a.noconvert(), "out"_a.noconvert(), "levels"_a, "threads"_a = 0,
          "image - low(image) + low(reference) on float32 [B, C, H, W] arrays; out may be image.");
#ifdef FLIPNET_WITH_CUDA
    // Enqueued on `stream`; the caller synchronises. Device arrays via DLPack (e.g. CuPy); never
    // converted: a temporary copy would be freed on return, before the kernel has read it.
    m.def("warp_crop_cuda", &warp_crop_cuda, "frame"_a.noconvert(), "matrices"_a.noconvert(),
          "out"_a.noconvert(), "border"_a, "border_value"_a, "stream"_a = 0,
          "warp_crop on device arrays (matrices on the host).");
    m.def("paste_faces_cuda", &paste_faces_cuda, "frame"_a.noconvert(), "faces"_a.noconvert(),
          "matrices"_a.noconvert(), "stream"_a = 0,
          "paste_faces on device arrays (matrices on the host).");
    m.def("wavelet_color_fix_cuda", &wavelet_color_fix_cuda, "image"_a.noconvert(),
          "reference"_a.noconvert(), "out"_a.noconvert(), "levels"_a, "stream"_a = 0,
          "wavelet_color_fix on device float32 arrays.");
#endif
}
