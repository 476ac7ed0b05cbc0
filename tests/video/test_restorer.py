"""VideoRestorer on the shipped demo engine (64 px, ONNX Runtime CPU) with MTCNN: flicker, order,
batching, the feed/pull API, and a generated clip restored end to end."""

from __future__ import annotations

import numpy as np
import pytest
from video.clips import cfr_pts, flicker, frame_times, static_face_frames, stream_packets, write_clip
from video.processors import IdentityProcessor

from flipnet_rt.runtime.profiling import StageTimer
from flipnet_rt.video.frames import Frame
from flipnet_rt.video.pipeline import SeedMode, VideoOptions, VideoRestorer
from flipnet_rt.video.transcode import transcode


class CountingFaces:
    """The real FaceRestorer, with the sizes of its core batches recorded."""

    def __init__(self, faces) -> None:
        self.inner, self.batches = faces, []
        self.detector, self.device_frames, self.aligned_crop = faces.detector, faces.device_frames, faces.aligned_crop

    def restore_faces(self, images, faces, seeds, aligned=None, tracks=None):
        self.batches.append(sum(len(f) for f in faces))
        return self.inner.restore_faces(images, faces, seeds, aligned, tracks)


def inner_box(face_box: np.ndarray, fraction: float = 0.7) -> np.ndarray:
    centre, half = (face_box[:2] + face_box[2:]) / 2, (face_box[2:] - face_box[:2]) * fraction / 2
    return np.r_[centre - half, centre + half]


@pytest.mark.slow
@pytest.mark.parametrize("eye_distance", [15.0, 30.0])
def test_one_seed_per_track_does_not_flicker(demo_faces, demo_video_restorer, eye_distance):
    """A still face under fresh sensor noise (sigma 4) in each of 12 frames, at the demo model's own
    64 px scale (eyes 15 px apart) and at twice it (keep-detail). Measured in the middle 70 % of the
    detected box. With the defaults (one seed per track, fidelity auto, what is taken from the
    input filtered along the track) the face flickers at most 0.3x a seed per frame and 0.5x the
    input (issue 25)."""
    frames, _ = static_face_frames(12, size=(320, 256), eye_distance=eye_distance, noise=4.0)
    box = inner_box(demo_faces.detect(frames[0])[0].box)
    runs = {
        "default": VideoOptions(batch_size=8),
        "track, unfiltered": VideoOptions(batch_size=8, stabilise=False),
        "seed per frame, unfiltered": VideoOptions(batch_size=8, seed_mode=SeedMode.FRAME, stabilise=False),
    }
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer

    plain = FaceRestorer(demo_video_restorer, demo_faces.detector, FaceOptions(fidelity=0.0))
    runs["seed per frame, fidelity 0 (before issue 25)"] = runs["seed per frame, unfiltered"]
    results = {}
    for name, options in runs.items():
        faces = plain if "fidelity 0" in name else demo_faces
        restorer = VideoRestorer(faces, options, timer=StageTimer())
        out = [f.image for f in restorer.restore_frames(frames)]
        assert len(out) == 12
        results[name] = flicker(out, box)
        assert restorer.tracks_seen == 1  # one face, one track, whatever the seeds
    source = flicker(frames, box)
    default, frame = results["default"], results["seed per frame, unfiltered"]
    print(
        f"eyes {eye_distance:g} px: mean frame-to-frame |difference| in the face: input {source:.2f}, "
        + ", ".join(f"{k} {v:.2f}" for k, v in results.items())
        + f"; default / seed per frame {default / frame:.2f}, default / input {default / source:.2f}"
    )
    assert default <= 0.3 * frame and default <= 0.3 * results["seed per frame, fidelity 0 (before issue 25)"]
    assert default <= 0.5 * source


def test_frames_come_back_in_order_with_their_timestamps_and_batched(demo_faces):
    frames, boxes = static_face_frames(4, faces=3, size=(320, 160), eye_distance=15.0)
    counting = CountingFaces(demo_faces)
    restorer = VideoRestorer(counting, VideoOptions(batch_size=7, lookahead=2))
    out = []
    for i, image in enumerate(frames):
        out += restorer.push(Frame(i, 1000 + 7 * i, None, image))
        assert len(out) <= max(0, i + 1 - 2)  # held frames never exceed the look-ahead + a batch
    out += restorer.flush()
    print(f"core batches (faces per call): {counting.batches}; tracks {restorer.tracks_seen}")
    assert [f.index for f in out] == list(range(4)) and [f.pts for f in out] == [1000 + 7 * i for i in range(4)]
    assert restorer.tracks_seen == 3
    assert counting.batches == [6, 6]  # 3 faces x 2 frames per core call: a third frame would exceed 7
    changed = [
        np.abs(o.image.astype(int) - f.astype(int))[y0:y1, x0:x1].mean()
        for o, f in zip(out, frames)
        for (x0, y0, x1, y1) in boxes
    ]
    assert min(changed) > 1.0  # every face of every frame went through the model


def test_feed_pull_close_and_generator(demo_faces):
    frames, _ = static_face_frames(4, eye_distance=15.0)
    with VideoRestorer(demo_faces, VideoOptions(batch_size=2, lookahead=3)) as restorer:
        early = []
        for image in frames:
            restorer.feed(image)
            early += list(restorer.pull())
    late = list(restorer.pull())
    assert len(early) + len(late) == 4 and len(late) >= 3  # the look-ahead is held until close
    with pytest.raises(RuntimeError, match="closed"):
        restorer.feed(frames[0])
    again = list(VideoRestorer(demo_faces, VideoOptions(batch_size=2, lookahead=3)).restore_frames(frames))
    for a, b in zip(early + late, again):  # same seeds, same batches: the same pixels
        np.testing.assert_array_equal(a.image, b.image)


def test_detect_every_k_interpolates_between_detections(demo_faces):
    frames, _ = static_face_frames(7, eye_distance=15.0)
    calls = []

    class Counting:
        def detect(self, image):
            calls.append(1)
            return demo_faces.detect(image)

    counting = CountingFaces(demo_faces)
    restorer = VideoRestorer(
        counting, VideoOptions(detect_every=5, lookahead=5, batch_size=7, tracking="interpolate"), detector=Counting()
    )
    out = list(restorer.restore_frames(frames))
    assert len(calls) == 3  # frames 0 and 5, and the last one (6) at the end
    assert counting.batches == [7] and len(out) == 7  # the 5 frames between detections got interpolated faces
    ahead = VideoRestorer(
        counting, VideoOptions(detect_every=5, lookahead=5, batch_size=7, tracking="interpolate"), detector=Counting()
    )
    annotated = [ahead.detect_ahead(Frame(i, i, None, image)) for i, image in enumerate(frames)]
    assert [f.faces is not None for f in annotated] == [True, False, False, False, False, True, False]
    again = list(ahead.restore_frames(annotated))
    assert len(calls) == 6 and counting.batches == [7, 7]  # the same detections, made ahead
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a.image, b.image)


@pytest.mark.parametrize("tracking", ["region", "interpolate"])
def test_full_searches_batched_across_frames_give_the_same_video(demo_faces, tracking):
    """Issue 29: with ``detect_batch`` the frames due for a full search (every 2nd here) are searched
    in one detector call per 3 of them; every frame comes out as it does searched one by one."""
    from flipnet_rt.faces.detectors import load_detector

    frames, _ = static_face_frames(9, faces=2, size=(320, 256), eye_distance=30.0)
    retinaface = load_detector("retinaface")
    batches: list[int] = []

    class Batching:
        name = "retinaface"

        def detect(self, image):
            return retinaface.detect(image)

        def detect_batch(self, images):
            batches.append(len(images))
            return retinaface.detect_batch(images)

    runs = {}
    for size in (1, 3):
        options = VideoOptions(detect_every=2, lookahead=2, batch_size=4, tracking=tracking, detect_batch=size)
        restorer = VideoRestorer(demo_faces, options, detector=Batching())
        out = []
        for i, image in enumerate(frames):
            out += restorer.push(image)
            assert len(out) <= max(0, i + 1 - 2)  # never ahead of the pushed frames
        out += restorer.flush()
        assert [f.index for f in out] == list(range(9)) and restorer.tracks_seen == 2
        runs[size] = out
    assert batches == [3, 2]  # frames 0, 2, 4 together, then 6 and 8 at the end (batch size 1: detect())
    for a, b in zip(runs[1], runs[3]):
        np.testing.assert_array_equal(a.image, b.image)


def test_region_tracking_follows_a_retinaface_search_with_mtcnn(demo_faces):
    """Issue 29: region tracking and refinement stay with MTCNN's last two stages (they measured
    faster and steadier than RetinaFace on a window); a detector with its own detect_near keeps it."""
    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.faces.mtcnn import MtcnnDetector

    retinaface, mtcnn = load_detector("retinaface"), demo_faces.detector
    assert isinstance(VideoRestorer(demo_faces, detector=retinaface).near_detector, MtcnnDetector)
    assert VideoRestorer(demo_faces, detector=mtcnn).near_detector is mtcnn
    calls: list[int] = []

    class Near:
        name = "near"

        def detect(self, image):
            raise AssertionError("the full search is the detector's")

        def detect_near(self, image, boxes):
            calls.append(len(boxes))
            return mtcnn.detect_near(image, boxes)

    frames, _ = static_face_frames(7, faces=2, size=(320, 256), eye_distance=30.0)
    options = VideoOptions(detect_every=3, lookahead=3, batch_size=4)
    video = VideoRestorer(demo_faces, options, detector=retinaface, near_detector=Near())
    out = list(video.restore_frames(frames))
    assert len(out) == 7 and video.tracks_seen == 2
    assert len(calls) == 7 and set(calls) == {2}  # refined at 0, 3, 6; found near at 1, 2, 4, 5


def test_bad_options():
    # library errors name the field (issue 28); the CLI shows the flag (tests/video/test_cli.py)
    for kwargs, match in [
        ({"batch_size": 0}, "^batch_size: 0; "),
        ({"detect_every": 0}, "^detect_every: 0; "),
        ({"detect_batch": 0}, "^detect_batch: 0; "),
        ({"detect_every": 12, "lookahead": 10, "tracking": "interpolate"}, "^lookahead: 10; "),
        ({"smoothing": -1}, "^smoothing: -1; "),
        ({"tracking": "kalman"}, "^tracking: 'kalman' is"),
        ({"seed_mode": "scene"}, "^seed_mode: 'scene' is not one of track, frame"),
    ]:
        with pytest.raises(ValueError, match=match):
            VideoOptions(**kwargs)


@pytest.mark.slow
def test_a_generated_clip_restored_by_the_demo_engine(demo_faces, tmp_path):
    frames, boxes = static_face_frames(10, eye_distance=15.0, size=(192, 128))
    src = write_clip(tmp_path / "in.mp4", cfr_pts(10), size=(192, 128), frame=lambda i: frames[i])
    out = tmp_path / "out.mp4"
    timer = StageTimer()
    video = VideoRestorer(demo_faces, VideoOptions(batch_size=4), timer=timer)
    report = transcode(src, out, video, timer=timer, prepare=video.detect_ahead)  # detection in its own thread
    print(
        f"{report.frames} frames in {report.seconds:.1f} s ({report.fps:.1f} frames/s); busy seconds "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(report.stages.items()))
    )
    assert frame_times(out) == frame_times(src) and stream_packets(out) == stream_packets(src)
    plain = tmp_path / "plain.mp4"
    transcode(src, plain, IdentityProcessor())  # the same encoder settings without restoration
    import av

    with av.open(str(plain)) as a, av.open(str(out)) as b:
        pairs = [
            (x.to_ndarray(format="rgb24").astype(int), y.to_ndarray(format="rgb24").astype(int))
            for x, y in zip(a.decode(video=0), b.decode(video=0))
        ]
    x0, y0, x1, y1 = boxes[0]
    face = np.mean([np.abs(x - y)[y0 + 20 : y1 - 20, x0 + 20 : x1 - 20].mean() for x, y in pairs])
    corner = np.mean([np.abs(x - y)[:20, :20].mean() for x, y in pairs])
    print(f"mean |restored - identity transcode|: face {face:.2f}, background corner {corner:.2f}")
    # the face was restored (fidelity auto keeps much of this mildly noisy input); the background only
    # carries the encoder's difference between two encodes (crf 18: about a grey level)
    assert face > 2.0 and corner < 1.5 and corner < face / 4
