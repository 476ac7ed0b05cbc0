// float32 -> float16 bits, round to nearest even (numpy's astype(np.float16)).
#pragma once

#include <cstdint>
#include <cstring>

namespace flipnet::detail {

inline std::uint16_t to_half(float value) {
    std::uint32_t f;
    std::memcpy(&f, &value, sizeof f);
    const std::uint32_t sign = (f >> 16) & 0x8000u;
    f &= 0x7fffffffu;
    if (f >= 0x7f800000u) {  // inf or NaN (NaN keeps a quiet payload bit)
        return static_cast<std::uint16_t>(sign | 0x7c00u | (f > 0x7f800000u ? 0x200u : 0u));
    }
    if (f >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
    if (f < 0x38800000u) {  // subnormal half (or zero): shift the mantissa with RNE
        if (f < 0x33000000u) return static_cast<std::uint16_t>(sign);  // below half the smallest
        const std::uint32_t exp = f >> 23;
        const std::uint32_t mant = (f & 0x7fffffu) | 0x800000u;
        const std::uint32_t shift = 126u - exp;  // 14..24 for exp in [102, 112]
        std::uint32_t half = mant >> shift;
        const std::uint32_t rest = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1u);
        if (rest > mid || (rest == mid && (half & 1u))) ++half;
        return static_cast<std::uint16_t>(sign | half);
    }
    // normal: rebias the exponent (127 -> 15) and round 13 mantissa bits away, to nearest even
    std::uint32_t h = ((f >> 13) - (112u << 10));
    const std::uint32_t rest = f & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: ok
    return static_cast<std::uint16_t>(sign | h);
}

}  // namespace flipnet::detail
