"""Training datasets: item contract, determinism by (seed, epoch, index), pairing, captions,
the off-shelf pool, mixing, bad files, and a smoke test on real LFW faces."""

from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import face_like
from PIL import Image

from flipnet_rt.evaluation.degradations import DegradationConfig, DegradationParams, RandomDegradation, apply
from flipnet_rt.imaging.geometry import prepare_square
from flipnet_rt.train.data import (
    LFW_CROP_BOX,
    HQFaceFolder,
    MixedDataset,
    OffShelfPool,
    PairedFolder,
    PairFit,
    collate,
    item_seed,
    load_captions,
)

R = 32
DEGRADE = RandomDegradation(DegradationConfig().scaled_to(R))
KEYS = {"hq", "lq", "caption", "face", "source", "degradation"}
LFW = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lfw"


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def make_faces(folder: Path, n: int, size: tuple[int, int] = (40, 48), suffix: str = ".png") -> list[Path]:
    """n generated face-like images of (H, W) ``size``, named face_000 ... ."""
    side = max(size)
    return [write(folder / f"face_{i:03d}{suffix}", face_like(side, i)[: size[0], : size[1]]) for i in range(n)]


def check_item(item: dict, face: bool, resolution: int = R) -> None:
    assert set(item) == KEYS
    for key in ("hq", "lq"):
        assert item[key].dtype == np.uint8 and item[key].shape == (resolution, resolution, 3)
    assert isinstance(item["caption"], str) and isinstance(item["source"], str)
    assert item["face"] is face
    assert item["degradation"] is None or isinstance(item["degradation"], dict)


def same_item(a: dict, b: dict) -> bool:
    return (
        np.array_equal(a["hq"], b["hq"])
        and np.array_equal(a["lq"], b["lq"])
        and a["degradation"] == b["degradation"]
        and a["source"] == b["source"]
    )


@pytest.fixture
def faces(tmp_path: Path) -> Path:
    make_faces(tmp_path / "hq", 6)
    return tmp_path / "hq"


# --------------------------------------------------------------------------- seeds


def test_item_seed_is_pure_and_separates_arguments():
    assert item_seed(1, 2, 3) == item_seed(1, 2, 3)
    seeds = {item_seed(s, e, i, k) for s in range(3) for e in range(3) for i in range(3) for k in range(3)}
    assert len(seeds) == 81 and all(0 <= s < 2**63 for s in seeds)


# --------------------------------------------------------------------------- HQ folder


def test_hq_folder_item_contract_and_on_the_fly_record(faces):
    data = HQFaceFolder(faces, R, DEGRADE, seed=0)
    assert len(data) == 6
    item = data[2]
    check_item(item, face=True)
    assert item["caption"] == "" and item["source"].endswith("face_002.png")
    record = item["degradation"]
    assert record["seed"] == item_seed(0, 0, 2)
    np.testing.assert_array_equal(apply(item["hq"], DegradationParams.from_dict(record)), item["lq"])
    json.dumps(record)  # loggable


def test_hq_folder_is_a_pure_function_of_seed_epoch_index(faces):
    a = HQFaceFolder(faces, R, DEGRADE, seed=5)
    b = HQFaceFolder(faces, R, DEGRADE, seed=5)
    first = [a[i] for i in range(len(a))]
    reversed_order = [b[i] for i in reversed(range(len(b)))][::-1]  # read order does not matter
    assert all(same_item(x, y) for x, y in zip(first, reversed_order, strict=True))
    a.set_epoch(1)
    epoch1 = [a[i] for i in range(len(a))]
    for x, y in zip(first, epoch1, strict=True):
        np.testing.assert_array_equal(x["hq"], y["hq"])
        assert not np.array_equal(x["lq"], y["lq"]), "a new epoch must draw new degradations"
    b.set_epoch(1)  # a restarted run sets the epoch and gets the same items
    assert all(same_item(x, b[i]) for i, x in enumerate(epoch1))
    a.set_epoch(0)
    assert same_item(a[3], first[3]) and same_item(a[-3], first[3])
    other = HQFaceFolder(faces, R, DEGRADE, seed=6)
    assert not np.array_equal(other[0]["lq"], first[0]["lq"])


def test_hq_folder_geometry_crop_box_and_square(tmp_path):
    image = face_like(250, 9)
    write(tmp_path / "a.png", image)
    data = HQFaceFolder(tmp_path, 64, DEGRADE, seed=0, crop_box=LFW_CROP_BOX)
    cropped = np.asarray(Image.fromarray(image[45:195, 50:200]).resize((64, 64), Image.Resampling.LANCZOS))
    hq = data[0]["hq"]
    # Same as cropping then resizing, except that the filter reads the real pixels just outside the
    # box instead of repeating its edge (3 output pixels of Lanczos support at 150 -> 64).
    np.testing.assert_array_equal(hq[4:-4, 4:-4], cropped[4:-4, 4:-4])
    assert np.abs(hq.astype(int) - cropped).max() <= 16
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255  # the center square is white, the sides black
    np.testing.assert_array_equal(prepare_square(wide, 20), np.full((20, 20, 3), 255, np.uint8))
    assert prepare_square(wide, 10, crop_box=(100, 100, 200, 200)).shape == (10, 10, 3)  # outside: whole image


def test_hq_folder_limit_is_a_seeded_subset(tmp_path):
    make_faces(tmp_path, 10)
    subsets = {tuple(HQFaceFolder(tmp_path, R, DEGRADE, seed=s, limit=4).files) for s in range(6)}
    assert all(len(s) == 4 for s in subsets) and len(subsets) > 1
    assert (
        HQFaceFolder(tmp_path, R, DEGRADE, seed=3, limit=4).files
        == HQFaceFolder(tmp_path, R, DEGRADE, seed=3, limit=4).files
    )
    with pytest.raises(ValueError, match="limit"):
        HQFaceFolder(tmp_path, R, DEGRADE, seed=0, limit=0)


def test_bad_files_skipped_at_construction_and_mid_epoch(tmp_path, caplog):
    make_faces(tmp_path, 4)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image suffix, ignored")
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="flipnet_rt.train.data"):
        data = HQFaceFolder(tmp_path, R, DEGRADE, seed=0)
    assert len(data) == 4 and {p.name for p, _ in data.skipped} == {"broken.png", "empty.jpg"}
    assert "broken.png" in caplog.text and "empty.jpg" in caplog.text
    # A file that goes bad after construction: the next file is used, with a warning.
    data.files[1].write_bytes(data.files[1].read_bytes()[:60])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flipnet_rt.train.data"):
        item = data[1]
    check_item(item, face=True)
    assert item["source"] == str(data.files[2]) and "face_001.png" in caplog.text


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        HQFaceFolder(tmp_path / "missing", R, DEGRADE, seed=0)
    with pytest.raises(ValueError, match="no readable images"):
        HQFaceFolder(tmp_path, R, DEGRADE, seed=0)
    make_faces(tmp_path, 1)
    with pytest.raises(ValueError, match="seed"):
        HQFaceFolder(tmp_path, R, DEGRADE, seed=-1)
    with pytest.raises(ValueError, match="epoch"):
        HQFaceFolder(tmp_path, R, DEGRADE, seed=0).set_epoch(-1)
    with pytest.raises(IndexError):
        HQFaceFolder(tmp_path, R, DEGRADE, seed=0)[1]


# --------------------------------------------------------------------------- pairs


def make_pairs(tmp_path: Path, hq_names: list[str], lq_names: list[str], size=(48, 40)) -> tuple[Path, Path]:
    for name in hq_names:
        write(tmp_path / "hq" / name, face_like(max(size), len(name))[: size[0], : size[1]])
    for name in lq_names:
        stem = Path(name).stem
        hq = next((n for n in hq_names if Path(n).stem == stem), name)
        write(tmp_path / "lq" / name, face_like(max(size), len(hq))[: size[0], : size[1]])  # LQ == HQ pixels
    return tmp_path / "hq", tmp_path / "lq"


def test_pairs_match_by_stem_and_report_unmatched(tmp_path, caplog):
    hq_dir, lq_dir = make_pairs(
        tmp_path, ["a.png", "bb.png", "ccc.png", "only_hq.png"], ["a.jpg", "bb.png", "ccc.bmp", "only_lq.png"]
    )
    with caplog.at_level(logging.WARNING, logger="flipnet_rt.train.data"):
        data = PairedFolder(hq_dir, lq_dir, R, seed=0)
    assert [(h.name, lq.name) for h, lq in data.pairs] == [
        ("a.png", "a.jpg"),
        ("bb.png", "bb.png"),
        ("ccc.png", "ccc.bmp"),
    ]
    assert sorted(p.name for p in data.unmatched) == ["only_hq.png", "only_lq.png"]
    assert "2 files without a partner" in caplog.text and "only_lq.png" in caplog.text
    item = data[1]
    check_item(item, face=False)
    assert item["degradation"] is None and item["source"].endswith("bb.png")
    np.testing.assert_array_equal(item["hq"], item["lq"])  # identical pixels: the crop is the same on both


def test_pairs_crop_varies_by_epoch_and_is_deterministic(tmp_path):
    hq_dir, lq_dir = make_pairs(tmp_path, ["a.png"], ["a.png"], size=(96, 120))
    data = PairedFolder(hq_dir, lq_dir, R, seed=0)
    crops = []
    for epoch in range(4):
        data.set_epoch(epoch)
        crops.append(data[0]["hq"])
    assert len({c.tobytes() for c in crops}) > 1
    again = PairedFolder(hq_dir, lq_dir, R, seed=0)
    again.set_epoch(2)
    np.testing.assert_array_equal(again[0]["hq"], crops[2])
    resized = PairedFolder(hq_dir, lq_dir, R, seed=0, fit=PairFit.RESIZE)[0]
    np.testing.assert_array_equal(resized["hq"], prepare_square(face_like(120, 5)[:96, :120], R))


def test_pairs_small_and_mismatched_sizes(tmp_path):
    write(tmp_path / "hq" / "x.png", face_like(20, 1))
    write(tmp_path / "lq" / "x.png", face_like(40, 1)[:30, :36])
    item = PairedFolder(tmp_path / "hq", tmp_path / "lq", R, seed=0)[0]
    check_item(item, face=False)


def test_pairs_key_pattern_and_duplicates(tmp_path):
    # Dense-Haze style names: 01_GT.png pairs 01_hazy.png.
    hq_dir, lq_dir = make_pairs(tmp_path, ["01_GT.png", "02_GT.png", "x.png", "x.jpg"], ["01_hazy.png", "02_hazy.jpg"])
    data = PairedFolder(hq_dir, lq_dir, R, seed=0, key_pattern=r"^(\d+)_(?:GT|hazy)$")
    assert [(h.name, lq.name) for h, lq in data.pairs] == [("01_GT.png", "01_hazy.png"), ("02_GT.png", "02_hazy.jpg")]
    assert sorted(p.name for p in data.unmatched) == ["x.jpg", "x.png"]
    with pytest.raises(ValueError, match="no readable pairs"):
        PairedFolder(hq_dir, lq_dir, R, seed=0)
    with pytest.raises(ValueError, match="key_pattern"):
        PairedFolder(hq_dir, lq_dir, R, seed=0, key_pattern="(")


def test_pairs_limit_picks_random_pairs(tmp_path):
    names = [f"p{i:02d}.png" for i in range(12)]
    hq_dir, lq_dir = make_pairs(tmp_path, names, names, size=(32, 32))
    picks = {tuple(h.name for h, _ in PairedFolder(hq_dir, lq_dir, R, seed=s, limit=5).pairs) for s in range(5)}
    assert all(len(p) == 5 for p in picks) and len(picks) > 1
    assert len(PairedFolder(hq_dir, lq_dir, R, seed=0, limit=100).pairs) == 12  # more than available: all


# --------------------------------------------------------------------------- captions


def test_captions_json_csv_and_lookup(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"face_000.png": "a smiling man", "face_001": "by stem"}))
    (tmp_path / "c.csv").write_text('file,caption\nface_000.jpg,"a woman, glasses"\nface_002,third\n')
    assert load_captions(tmp_path / "c.json") == {"face_000.png": "a smiling man", "face_001": "by stem"}
    assert load_captions(tmp_path / "c.csv") == {"face_000.jpg": "a woman, glasses", "face_002": "third"}
    make_faces(tmp_path / "hq", 3)
    data = HQFaceFolder(tmp_path / "hq", R, DEGRADE, seed=0, captions=load_captions(tmp_path / "c.json"))
    assert [data[i]["caption"] for i in range(3)] == ["a smiling man", "by stem", ""]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", '{\n"a.png": "x",\n"b.png" "y"\n}', r"bad\.json:3: invalid JSON"),
        ("list.json", '["a", "b"]', "expected a JSON object"),
        ("num.json", '{"a.png": 3}', "caption of 'a.png' must be a string"),
        ("cols.csv", "name,text\na,b\n", r"cols\.csv:1: header .* lacks"),
        ("fields.csv", "file,caption\na,b\nc,d,e\n", r"fields\.csv:3: expected 2 fields"),
        ("dup.csv", "file,caption\na,b\na,c\n", r"dup\.csv:3: duplicate file 'a' \(first on line 2\)"),
        ("empty.csv", "", r"empty\.csv:1: empty CSV"),
        ("c.yaml", "a: b", "must be a .json or .csv"),
    ],
)
def test_caption_errors_name_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        load_captions(tmp_path / name)


def test_captions_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions file not found"):
        load_captions(tmp_path / "none.json")


# --------------------------------------------------------------------------- off-shelf pool


def make_pool(pool: Path, hq_files: list[Path], variants: int, size: int, skip: int | None = None) -> None:
    """Off-shelf variants named as ``flipnet-rt degrade --variants K`` writes them (flat pixel values = k)."""
    for i, path in enumerate(hq_files):
        if i == skip:
            continue
        for k in range(variants):
            name = f"{path.stem}_v{k}.png" if variants > 1 else f"{path.stem}.png"
            write(pool / name, np.full((size, size, 3), 10 * (k + 1), np.uint8))


def test_offshelf_pool_mixing_probability_and_variants(tmp_path, caplog):
    files = make_faces(tmp_path / "hq", 10, size=(24, 24))
    make_pool(tmp_path / "pool", files, 3, 24, skip=9)
    with caplog.at_level(logging.WARNING, logger="flipnet_rt.train.data"):
        data = OffShelfPool(HQFaceFolder(tmp_path / "hq", R, DEGRADE, seed=0), tmp_path / "pool", seed=1)
    assert data.missing == 1 and "1 of 10 HQ images have no off-shelf variant" in caplog.text
    offshelf, total, variants = 0, 0, []
    for epoch in range(30):
        data.set_epoch(epoch)
        for i in range(9):
            item = data[i]
            check_item(item, face=True)
            total += 1
            record = item["degradation"]
            if "offshelf" in record:
                offshelf += 1
                k = record["variant"]
                variants.append(k)
                assert record["offshelf"].endswith(f"face_{i:03d}_v{k}.png")
                np.testing.assert_array_equal(item["lq"], np.full((R, R, 3), 10 * (k + 1), np.uint8))
            else:
                assert record["seed"] == item_seed(0, epoch, i)
        assert "seed" in data[9]["degradation"]  # no variants: always on the fly
    fraction = offshelf / total
    print(f"off-shelf fraction {fraction:.3f} over {total} items; variant counts {np.bincount(variants).tolist()}")
    assert abs(fraction - 0.5) < 0.08
    assert min(np.bincount(variants, minlength=3)) > offshelf / 3 * 0.6
    data.set_epoch(4)
    again = OffShelfPool(HQFaceFolder(tmp_path / "hq", R, DEGRADE, seed=0), tmp_path / "pool", seed=1)
    again.set_epoch(4)
    assert all(same_item(data[i], again[i]) for i in range(10))


def test_offshelf_pool_single_variant_and_crop_box(tmp_path):
    files = make_faces(tmp_path / "hq", 2, size=(250, 250))
    make_pool(tmp_path / "pool", files, 1, 250)
    base = HQFaceFolder(tmp_path / "hq", R, DEGRADE, seed=0, crop_box=LFW_CROP_BOX)
    data = OffShelfPool(base, tmp_path / "pool", seed=0, probability=1.0)
    item = data[1]
    assert item["degradation"] == {"offshelf": str(tmp_path / "pool" / "face_001.png"), "variant": 0}
    np.testing.assert_array_equal(item["lq"], np.full((R, R, 3), 10, np.uint8))
    never = OffShelfPool(base, tmp_path / "pool", seed=0, probability=0.0)
    assert all("seed" in never[i]["degradation"] for i in range(2))
    with pytest.raises(ValueError, match="probability"):
        OffShelfPool(base, tmp_path / "pool", seed=0, probability=1.5)


# --------------------------------------------------------------------------- mixing


def test_mixed_dataset_counts_subsets_and_epochs(tmp_path):
    faces = HQFaceFolder(make_faces(tmp_path / "hq", 8, size=(24, 24))[0].parent, R, DEGRADE, seed=0)
    names = [f"p{i}.png" for i in range(5)]
    pairs = PairedFolder(*make_pairs(tmp_path, names, names, size=(40, 40)), R, seed=0)
    mixed = MixedDataset([(pairs, None), (faces, 3)], seed=7)
    assert len(mixed) == 8
    located = [mixed.locate(i) for i in range(len(mixed))]
    assert sorted(p for p, _ in located) == [0] * 5 + [1] * 3
    subset0 = sorted(i for p, i in located if p == 1)
    mixed.set_epoch(1)
    located1 = [mixed.locate(i) for i in range(len(mixed))]
    assert located1 != located, "the order changes per epoch"
    assert sorted(i for p, i in located1 if p == 1) == subset0, "the subset is fixed across epochs"
    assert faces.epoch == 1 and pairs.epoch == 1
    items = list(mixed)
    for item in items:
        check_item(item, face=item["degradation"] is not None)
    assert sum(item["face"] for item in items) == 3
    again = MixedDataset([(pairs, None), (faces, 3)], seed=7)
    again.set_epoch(1)
    assert all(same_item(a, b) for a, b in zip(items, again, strict=True))
    clone = pickle.loads(pickle.dumps(again))  # DataLoader workers get copies
    assert all(same_item(a, b) for a, b in zip(items, clone, strict=True))
    batch = collate(items[:4])
    assert batch["hq"].shape == (4, R, R, 3) and batch["face"].dtype == bool and len(batch["degradation"]) == 4
    with pytest.raises(ValueError, match="count must be in 1..8"):
        MixedDataset([(faces, 9)], seed=0)
    other = HQFaceFolder(tmp_path / "hq", 16, DEGRADE, seed=0)
    with pytest.raises(ValueError, match="different resolutions"):
        MixedDataset([(faces, None), (other, None)], seed=0)


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (LFW / "train").is_dir(), reason="../shared/data/lfw/train not present (real LFW faces)")
def test_lfw_smoke():
    degrade = RandomDegradation(DegradationConfig().scaled_to(64))
    start = time.perf_counter()
    data = HQFaceFolder(LFW / "train", 64, degrade, seed=0, crop_box=LFW_CROP_BOX, limit=8)
    built = time.perf_counter() - start
    start = time.perf_counter()
    items = [data[i] for i in range(len(data))]
    per_item = (time.perf_counter() - start) / len(items)
    psnr = []
    for item in items:
        check_item(item, face=True, resolution=64)
        mse = np.mean((item["lq"].astype(np.float64) - item["hq"]) ** 2)
        psnr.append(10 * np.log10(255**2 / max(mse, 1e-10)))
    hq = np.stack([it["hq"] for it in items]).astype(np.float64)
    print(
        f"LFW: {len(data)} images (limit 8), built in {built:.2f} s, {per_item * 1000:.1f} ms/item; "
        f"HQ mean {hq.mean():.1f} std {hq.std():.1f}; LQ PSNR median {np.median(psnr):.2f} dB "
        f"(min {min(psnr):.2f}, max {max(psnr):.2f})"
    )
    assert 40 < hq.mean() < 220 and hq.std() > 20  # real photos, not blank
    assert 10 < np.median(psnr) < 40
