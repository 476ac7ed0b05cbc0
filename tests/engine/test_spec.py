"""flipnet_rt.engine.spec: symbolic dimensions, profiles, shape solving, and every network's I/O spec
checked against the PyTorch networks themselves (issue 19: the engine group's fast tests)."""

from __future__ import annotations

import numpy as np
import pytest

from flipnet_rt.engine.spec import (
    Dim,
    KVSpec,
    NetworkSpec,
    Profile,
    TensorSpec,
    infer_env,
    kv_names,
    network_specs,
    shape_key,
)


def _t(name, *dims, dtype="float32"):
    return TensorSpec(name, dtype, tuple(Dim.parse(d) for d in dims))


SPEC = NetworkSpec(
    "net",
    (_t("sample", "2*B", 4, "h", "w"), _t("timestep", "2*B"), _t("kv", "B", "h*w/4", 8), _t("phi", 1)),
    (_t("out", "2*B", 4, "h", "w"), _t("fixed", 3, 5)),
)


@pytest.mark.parametrize(
    "text, dim, back",
    [
        ("2*B", Dim(2, ("B",), 1), "2*B"),
        ("h*w/4", Dim(1, ("h", "w"), 4), "h*w/4"),
        (333, Dim(333), "333"),
        ("333", Dim(333), "333"),
        ("2*B*3", Dim(6, ("B",), 1), "6*B"),
        (" B ", Dim(1, ("B",)), "B"),
        ("1", Dim(1), "1"),
        ("4*h/2", Dim(4, ("h",), 2), "4*h/2"),
    ],
)
def test_dimensions_parse_and_print(text, dim, back):
    assert Dim.parse(text) == dim and str(dim) == back and Dim.parse(str(dim)) == dim
    assert dim.static is (not dim.symbols)


@pytest.mark.parametrize("text", ["x", "2*b", "B+1", "", "2**B"])
def test_bad_dimensions_name_the_form(text):
    with pytest.raises(ValueError) as info:
        Dim.parse(text)
    assert str(info.value) == f"bad dimension {text!r}: use e.g. 2*B, h*w/4 or 333"


def test_dimension_values():
    assert Dim.parse("h*w/4").value({"h": 4, "w": 6}) == 6
    assert Dim.parse("2*B").value({"B": 3}) == 6 and Dim(7).value({}) == 7
    with pytest.raises(ValueError) as info:
        Dim.parse("h*w/4").value({"h": 3, "w": 3})
    assert str(info.value) == "dimension h*w/4 is not whole for {'h': 3, 'w': 3}"


def test_tensor_specs_round_trip():
    t = _t("kv", "B", "h*w/4", 8, dtype="float16")
    assert t.concrete({"B": 2, "h": 4, "w": 8}) == (2, 8, 8)
    assert t.to_dict() == {"name": "kv", "dtype": "float16", "shape": ["B", "h*w/4", 8]}
    assert TensorSpec.from_dict(t.to_dict()) == t


def test_profiles():
    p = Profile(B=(1, 2, 4), h=(8, 16, 32), w=(6, 12, 24))
    assert [p.env(i) for i in range(3)] == [
        {"B": 1, "h": 8, "w": 6},
        {"B": 2, "h": 16, "w": 12},
        {"B": 4, "h": 32, "w": 24},
    ]
    assert p.to_dict() == {"B": [1, 2, 4], "h": [8, 16, 32], "w": [6, 12, 24]}
    assert Profile.from_dict(p.to_dict()) == p
    assert Profile.from_dict({"B": [1, 1, 1], "h": ["2", 2, 2], "w": [3, 3, 3]}) == Profile(
        (1, 1, 1), (2, 2, 2), (3, 3, 3)
    )
    for key, bad in (("B", [0, 1, 2]), ("h", [2, 1, 3]), ("w", [1, 3, 2])):
        data = {**p.to_dict(), key: bad}
        with pytest.raises(ValueError) as info:
            Profile.from_dict(data)
        assert str(info.value) == f"profile.{key}: need 1 <= min <= opt <= max, got {bad[0]}:{bad[1]}:{bad[2]}"


def test_network_spec_helpers():
    assert SPEC.input("kv") is SPEC.inputs[2]
    assert SPEC.input_names == ["sample", "timestep", "kv", "phi"] and SPEC.output_names == ["out", "fixed"]
    env = {"B": 2, "h": 4, "w": 6}
    assert SPEC.shapes(env) == {
        "sample": (4, 4, 4, 6),
        "timestep": (4,),
        "kv": (2, 6, 8),
        "phi": (1,),
        "out": (4, 4, 4, 6),
        "fixed": (3, 5),
    }
    profile = Profile(B=(1, 2, 3), h=(4, 4, 8), w=(4, 8, 8))
    assert SPEC.profile_shapes(profile) == {
        "sample": ((2, 4, 4, 4), (4, 4, 4, 8), (6, 4, 8, 8)),
        "timestep": ((2,), (4,), (6,)),
        "kv": ((1, 4, 8), (2, 8, 8), (3, 16, 8)),
    }  # phi is static: not in the profile
    assert NetworkSpec.from_dict("net", SPEC.to_dict()) == SPEC
    assert list(SPEC.to_dict()) == ["inputs", "outputs"]


def test_infer_env_solves_and_checks_every_input():
    shapes = {"sample": (6, 4, 8, 4), "timestep": [6], "kv": (3, 8, 8), "phi": (1,)}
    assert infer_env(SPEC, shapes) == {"B": 3, "h": 8, "w": 4}
    with pytest.raises(ValueError) as info:
        infer_env(SPEC, {**shapes, "timestep": (4,)})
    assert str(info.value) == ("net: input timestep has shape (4,); the spec is [2*B] with {'B': 3, 'h': 8, 'w': 4}")
    with pytest.raises(ValueError) as info:
        infer_env(SPEC, {**shapes, "kv": (3, 8)})
    assert str(info.value) == "net: input kv has shape (3, 8); the spec is [B, h*w/4, 8]"
    with pytest.raises(ValueError) as info:  # an odd 2*B: B is never solved, so no input fits
        infer_env(SPEC, {**shapes, "sample": (5, 4, 8, 4), "timestep": (5,)})
    assert "net: input sample has shape (5, 4, 8, 4)" in str(info.value)
    with pytest.raises(ValueError) as info:  # h*w/4 not whole
        infer_env(SPEC, {**shapes, "sample": (6, 4, 3, 3)})
    assert str(info.value).startswith("net: input kv has shape (3, 8, 8); the spec is [B, h*w/4, 8] with")
    assert shape_key(SPEC, {n: np.zeros(s) for n, s in shapes.items()}) == (
        "net",
        ((6, 4, 8, 4), (6,), (3, 8, 8), (1,)),
    )


def test_kv_names():
    assert kv_names(0) == [] and kv_names(2) == ["k_00", "v_00", "k_01", "v_01"]
    assert kv_names(11)[-2:] == ["k_10", "v_10"]


def test_every_network_spec_matches_the_pytorch_network(tiny_model):
    """Run each network of random:tiny on inputs shaped by its spec: the outputs have the spec's shapes."""
    torch = pytest.importorskip("torch")
    from flipnet_rt.backends.torch import TorchBackend

    backend = TorchBackend(tiny_model)
    env = {"B": 2, "h": 8, "w": 4}
    rng = np.random.default_rng(0)
    for name, spec in backend.specs.items():
        shapes = spec.shapes(env)
        feeds = {t.name: rng.standard_normal(shapes[t.name]).astype(np.float32) for t in spec.inputs}
        if "timestep" in feeds:
            feeds["timestep"] = np.full(shapes["timestep"], 10.0, np.float32)
        with torch.inference_mode():
            out = backend.run(name, {k: backend.from_numpy(v) for k, v in feeds.items()})
        assert {k: tuple(v.shape) for k, v in out.items()} == {t.name: shapes[t.name] for t in spec.outputs}, name
    config = tiny_model.config
    specs = network_specs(config, [KVSpec(0, 32), KVSpec(2, 64)], "float16")
    assert set(specs) == {"unet", "unet_cond", "unet_input", "vae_encoder", "vae_decoder", "face_encoder", "detector"}
    assert "detector" not in network_specs(config, [KVSpec(0, 32)], detector=False)
    # the detector: float32 frames of 32h x 32w whatever the engine's precision, 42 prior boxes per 32x32
    detector = specs["detector"]
    assert {t.dtype for t in (*detector.inputs, *detector.outputs)} == {"float32"}
    assert detector.shapes({"B": 2, "h": 23, "w": 40}) == {
        "input": (2, 3, 736, 1280),
        "loc": (2, 42 * 23 * 40, 4),
        "conf": (2, 42 * 23 * 40, 2),
        "landmarks": (2, 42 * 23 * 40, 10),
    }
    assert specs["unet_cond"].output_names == kv_names(2)
    assert [str(d) for d in specs["unet_cond"].outputs[2].shape] == ["B", "h*w/16", "64"]
    assert specs["unet"].input("timestep").dtype == "float32" and specs["unet"].input("phi").dtype == "float16"
    assert specs["unet_input"].input_names == ["sample", "timestep", "context", "phi", *kv_names(2)]
    assert specs["face_encoder"].shapes({"B": 1})["image"] == (1, 3, config.resolution, config.resolution)


def test_infer_env_solves_dimensions_with_a_divisor():
    spec = NetworkSpec("n", (_t("x", "3*h/2", "w"),), ())
    assert infer_env(spec, {"x": (9, 5)}) == {"h": 6, "w": 5}


def test_network_specs_default_to_float32():
    from flipnet_rt.config.presets import tiny

    specs = network_specs(tiny(), [KVSpec(0, 8)])
    assert {t.dtype for s in specs.values() for t in (*s.inputs, *s.outputs)} == {"float32"}


def test_the_fidelity_estimator_has_a_spec_when_asked():
    """Issue 25: the fidelity network (input crop and restoration -> W), at the face size, in the
    engine's precision; absent unless the model has one."""
    from flipnet_rt.config.presets import tiny

    config = tiny()
    assert "fidelity" not in network_specs(config, [KVSpec(0, 8)])
    spec = network_specs(config, [KVSpec(0, 8)], "float16", fidelity=True)["fidelity"]
    assert spec.name == "fidelity" and spec.input_names == ["image", "restored"] and spec.output_names == ["weight"]
    face = (3, 3, config.resolution, config.resolution)
    assert spec.shapes({"B": 3}) == {"image": face, "restored": face, "weight": (3,)}
    assert {t.dtype for t in (*spec.inputs, *spec.outputs)} == {"float16"}
