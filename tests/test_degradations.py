"""On-the-fly degradation (Eq. 9, Real-ESRGAN high-order): ranges, determinism, real JPEG, scaling."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from helpers import face_like
from hypothesis import given, settings
from hypothesis import strategies as st

from flipnet_rt.evaluation.degradations import (
    EQ9_ORDER,
    DegradationConfig,
    DegradationParams,
    Interp,
    PassConfig,
    PassParams,
    RandomDegradation,
    Step,
    apply,
    kernel_size_for,
    sample_params,
)

CFG64 = DegradationConfig().scaled_to(64)


def identity_pass(quality: int, order: tuple[Step, ...] = EQ9_ORDER, **changes) -> PassParams:
    """A pass whose only effect is JPEG: sigma 0.1 (kernel weights e^-50 off-centre), s = 1, no noise."""
    p = PassParams(
        order=order,
        sigma=0.1,
        kernel_size=3,
        scale=1.0,
        down_interp=Interp.AREA,
        noise=0.0,
        noise_seed=0,
        quality=quality,
        up_interp=Interp.BILINEAR,
    )
    return replace(p, **changes)


def cv2_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def blockiness(image: np.ndarray) -> float:
    """Mean |step| across 8x8 block borders over the mean |step| inside blocks (1 = no block edges)."""
    g = image.astype(np.float64).mean(axis=2)
    dx = np.abs(np.diff(g, axis=1))
    cols = np.arange(dx.shape[1])
    border, inside = dx[:, cols % 8 == 7].mean(), dx[:, cols % 8 != 7].mean()
    return float(border / max(inside, 1e-9))


# --------------------------------------------------------------------------- config


def test_paper_defaults():
    cfg = DegradationConfig()
    for p in (cfg.first, cfg.second):
        assert (p.sigma, p.scale, p.noise, p.quality) == ((0.1, 15.0), (0.8, 32.0), (0.0, 20.0), (30, 95))
    assert cfg.base_resolution == 512


@pytest.mark.parametrize(
    ("resolution", "sigma", "scale"),
    [
        (64, (0.1, 1.875), (0.8, 4.0)),
        (128, (0.1, 3.75), (0.8, 8.0)),
        (512, (0.1, 15.0), (0.8, 32.0)),
        (16, (0.1, 0.46875), (0.8, 1.0)),
        (8, (0.1, 0.234375), (0.8, 1.0)),
    ],
)
def test_scaled_ranges(resolution, sigma, scale):
    cfg = DegradationConfig().scaled_to(resolution)
    for p in (cfg.first, cfg.second):
        assert p.sigma == pytest.approx(sigma) and p.scale == pytest.approx(scale)
        assert p.noise == (0.0, 20.0) and p.quality == (30, 95)  # per-pixel ranges do not scale
    assert cfg.base_resolution == resolution
    # The severest downsample leaves 16 px whenever that is possible (paper: 512 / 32).
    if resolution >= 16:
        assert resolution / cfg.first.scale[1] == pytest.approx(16.0)


def test_scaling_composes():
    assert DegradationConfig().scaled_to(128).scaled_to(64) == DegradationConfig().scaled_to(64)


def test_second_pass_has_its_own_ranges():
    cfg = DegradationConfig(second=PassConfig(sigma=(0.5, 1.0), scale=(1.0, 2.0), noise=(0.0, 5.0), quality=(60, 95)))
    for seed in range(50):
        p = sample_params(np.random.default_rng(seed), cfg)
        assert 0.5 <= p.second.sigma <= 1.0 and 1.0 <= p.second.scale <= 2.0
        assert p.second.noise <= 5.0 and p.second.quality >= 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"second": "x"}, "DegradationConfig.second"),
        ({"interpolations": ("nearest",)}, "DegradationConfig.interpolations"),
        ({"interpolations": ()}, "DegradationConfig.interpolations"),
        ({"max_kernel_size": 4}, "DegradationConfig.max_kernel_size"),
        ({"base_resolution": 0}, "DegradationConfig.base_resolution"),
    ],
)
def test_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DegradationConfig(**kwargs)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sigma", (0.0, 1.0)),
        ("sigma", (2.0, 1.0)),
        ("scale", (-1.0, 2.0)),
        ("noise", (-1.0, 2.0)),
        ("quality", (30, 101)),
        ("quality", (30.5, 90)),
        ("sigma", (0.1, float("inf"))),
        ("noise", (1.0,)),
    ],
)
def test_pass_range_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"PassConfig\.{field}"):
        PassConfig(**{field: value})
    with pytest.raises(ValueError, match=rf"DegradationConfig\.second\.{field}"):
        DegradationConfig.from_dict({"second": {field: list(value)}})


def test_config_dict_round_trip():
    cfg = DegradationConfig().scaled_to(64)
    assert DegradationConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        DegradationConfig.from_dict({"blur": [1, 2]})


def test_kernel_size_rule():
    assert kernel_size_for(0.1) == 3
    assert kernel_size_for(1.0) == 7
    assert kernel_size_for(15.0) == 91
    assert kernel_size_for(40.0) == 91  # capped
    assert kernel_size_for(15.0, 31) == 31


# --------------------------------------------------------------------------- sampling


range_st = st.tuples(st.floats(0.01, 40.0), st.floats(0.01, 40.0)).map(sorted).map(tuple)
quality_st = st.tuples(st.integers(1, 100), st.integers(1, 100)).map(sorted).map(tuple)
noise_st = st.tuples(st.floats(0.0, 50.0), st.floats(0.0, 50.0)).map(sorted).map(tuple)
pass_st = st.builds(PassConfig, sigma=range_st, scale=range_st, noise=noise_st, quality=quality_st)
config_st = st.builds(
    DegradationConfig, first=pass_st, second=pass_st, max_kernel_size=st.integers(1, 60).map(lambda k: 2 * k + 1)
)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), cfg=config_st)
def test_params_always_within_ranges(seed, cfg):
    params = sample_params(np.random.default_rng(seed), cfg)
    for p, c in ((params.first, cfg.first), (params.second, cfg.second)):
        assert c.sigma[0] <= p.sigma <= c.sigma[1]
        assert c.scale[0] <= p.scale <= c.scale[1]
        assert c.noise[0] <= p.noise <= c.noise[1]
        assert c.quality[0] <= p.quality <= c.quality[1] and isinstance(p.quality, int)
        assert p.kernel_size % 2 == 1 and 3 <= p.kernel_size <= cfg.max_kernel_size
        assert p.kernel_size == min(2 * math.ceil(3 * p.sigma) + 1, cfg.max_kernel_size)
        assert p.down_interp in cfg.interpolations and p.up_interp in cfg.interpolations
        assert sorted(p.order) == sorted(EQ9_ORDER)
    assert params.first.order == EQ9_ORDER
    assert DegradationParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params


def test_sampled_distribution_is_uniform():
    draws = [sample_params(np.random.default_rng(s), DegradationConfig()) for s in range(2000)]
    sigma = np.array([d.first.sigma for d in draws])
    quality = np.array([d.second.quality for d in draws])
    print(f"sigma mean {sigma.mean():.3f} (expect 7.55), quality mean {quality.mean():.2f} (expect 62.5)")
    assert abs(sigma.mean() - 7.55) < 0.3 and abs(quality.mean() - 62.5) < 1.5
    assert quality.min() == 30 and quality.max() == 95  # both ends reachable


def test_pass2_order_recorded_and_varies():
    orders = [sample_params(np.random.default_rng(s), CFG64).second.order for s in range(300)]
    counts = {order: orders.count(order) for order in set(orders)}
    print(f"{len(counts)} of 24 pass-2 orders seen in 300 draws; most frequent {max(counts.values())}")
    assert len(counts) == 24
    assert max(counts.values()) < 30  # expected 12.5 each
    record = sample_params(np.random.default_rng(0), CFG64).to_dict()
    assert record["first"]["order"] == ["blur", "down", "noise", "jpeg"]
    assert set(record["second"]["order"]) == {"blur", "down", "noise", "jpeg"}


# --------------------------------------------------------------------------- apply


@pytest.mark.parametrize("shape", [(64, 64), (37, 53), (3, 5), (1, 1)])
def test_output_valid_uint8_same_shape(shape):
    image = face_like(max(shape), 1)[: shape[0], : shape[1]]
    for seed in range(8):
        lq, _ = RandomDegradation()(image, seed)  # unscaled paper ranges: kernels and scales larger than the image
        assert lq.dtype == np.uint8 and lq.shape == image.shape and lq.flags.c_contiguous


def test_same_seed_bitwise_same_and_seeds_differ():
    image = face_like(64, 2)
    degrade = RandomDegradation(CFG64)
    outs = [degrade(image, seed)[0] for seed in range(6)]
    again = [degrade(image.copy(), seed)[0] for seed in range(6)]
    for a, b in zip(outs, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for i in range(6):
        for j in range(i + 1, 6):
            assert not np.array_equal(outs[i], outs[j]), f"seeds {i} and {j} gave the same LQ"
    params = degrade(image, 3)[1]
    np.testing.assert_array_equal(apply(image, params), outs[3])
    np.testing.assert_array_equal(apply(image, DegradationParams.from_dict(params.to_dict())), outs[3])


def test_input_not_modified():
    image = face_like(64, 3)
    before = image.copy()
    RandomDegradation(CFG64)(image, 0)
    np.testing.assert_array_equal(image, before)


def test_jpeg_is_a_real_codec_round_trip():
    image = face_like(64, 4)
    params = DegradationParams(
        first=identity_pass(30), second=identity_pass(50, order=(Step.JPEG, Step.NOISE, Step.DOWN, Step.BLUR))
    )
    out = apply(image, params)
    np.testing.assert_array_equal(out, cv2_jpeg(cv2_jpeg(image, 30), 50))


def test_jpeg_quality_30_has_block_artefacts():
    yy, xx = np.mgrid[0:128, 0:128]
    waves = [120 + 60 * np.sin(xx / 13) * np.cos(yy / 17), 100 + 50 * np.sin((xx + yy) / 19), 90 + 40 * np.cos(xx / 23)]
    smooth = np.stack(waves, axis=-1).round().astype(np.uint8)  # no 8-periodic structure: blockiness 1.0
    low = apply(smooth, DegradationParams(identity_pass(30), identity_pass(30)))
    high = apply(smooth, DegradationParams(identity_pass(95), identity_pass(95)))
    b_in, b_low, b_high = blockiness(smooth), blockiness(low), blockiness(high)
    err_low = np.abs(low.astype(int) - smooth).mean()
    err_high = np.abs(high.astype(int) - smooth).mean()
    print(
        f"blockiness: input {b_in:.2f}, q95 {b_high:.2f}, q30 {b_low:.2f}; mean abs error q95 {err_high:.2f}, "
        f"q30 {err_low:.2f}"
    )
    assert b_in < 1.1 and b_high < 1.2 and b_low > 2.0
    assert err_low > err_high > 0


def test_each_step_has_its_effect():
    image = face_like(64, 5)

    def run(**changes):
        return apply(image, DegradationParams(identity_pass(95, **changes), identity_pass(95))).astype(np.float64)

    def detail(x):
        return np.abs(np.diff(x, axis=1)).mean()

    base = run()
    blurred = run(sigma=2.0, kernel_size=kernel_size_for(2.0))
    down = run(scale=4.0)
    noisy = run(noise=15.0, noise_seed=1)
    print(
        f"horizontal detail: base {detail(base):.2f}, blur {detail(blurred):.2f}, s=4 {detail(down):.2f}, "
        f"noise {detail(noisy):.2f}"
    )
    assert detail(blurred) < 0.8 * detail(base)
    assert detail(down) < 0.8 * detail(base)
    assert detail(noisy) > 1.5 * detail(base)
    assert not np.array_equal(run(noise=15.0, noise_seed=1), run(noise=15.0, noise_seed=2))


def test_pass2_order_is_applied():
    image = face_like(64, 6)
    p = sample_params(np.random.default_rng(0), CFG64)
    strong = replace(p.second, sigma=1.5, kernel_size=kernel_size_for(1.5), scale=3.0, noise=10.0, quality=30)
    outs = [
        apply(image, DegradationParams(p.first, replace(strong, order=order)))
        for order in (EQ9_ORDER, EQ9_ORDER[::-1], (Step.NOISE, Step.JPEG, Step.BLUR, Step.DOWN))
    ]
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def test_rejects_bad_images():
    with pytest.raises(ValueError, match="uint8"):
        apply(np.zeros((8, 8, 3), np.float32), sample_params(np.random.default_rng(0), CFG64))
    with pytest.raises(ValueError, match="uint8"):
        apply(np.zeros((8, 8), np.uint8), sample_params(np.random.default_rng(0), CFG64))


def test_scaled_config_is_milder_at_64():
    """At 64 px the paper's 512 px ranges (s up to 32: 2 px left) wipe the face out; the scaled
    ones leave more of it (PSNR of LQ vs HQ, median over seeds)."""

    def median_psnr(size, cfg, n):
        image = face_like(size, 7)
        degrade = RandomDegradation(cfg)
        values = []
        for seed in range(n):
            mse = np.mean((degrade(image, seed)[0].astype(np.float64) - image) ** 2)
            values.append(10 * np.log10(255**2 / max(mse, 1e-10)))
        return float(np.median(values))

    at64_scaled = median_psnr(64, CFG64, 40)
    at64_unscaled = median_psnr(64, DegradationConfig(), 40)
    print(f"median PSNR: 64 scaled {at64_scaled:.2f} dB, 64 with 512 ranges {at64_unscaled:.2f} dB")
    assert at64_scaled > at64_unscaled + 1.0
