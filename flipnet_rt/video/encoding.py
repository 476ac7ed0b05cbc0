"""Encoder settings for the restored video stream (the other streams are copied, never re-encoded),
and the choice of its pixel format (:func:`choose_pix_fmt`): the input's bit depth and chroma where
the encoder takes them, the input's size always (odd sizes get full-resolution chroma)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

#: ``pix_fmt`` that follows the input: its format when the encoder takes it, else the closest one.
AUTO = "auto"

#: Codecs whose quality knob is ``crf`` (lower = better, larger files) and that take ``preset``.
_CRF_PRESET = {"libx264", "libx265"}
_CRF_ONLY = {"libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"}
_NVENC = {"h264_nvenc", "hevc_nvenc", "av1_nvenc"}


@dataclass(frozen=True)
class EncoderOptions:
    """How the restored frames are encoded.

    codec: an FFmpeg encoder PyAV ships (libx264, libx265, libvpx-vp9, libaom-av1, libsvtav1,
        h264_nvenc...). crf: constant quality (libx264/libx265: 0 lossless .. 51; 18 looks
        transparent; for NVENC it is passed as ``cq``). preset: speed/size trade-off of x264/x265
        and NVENC (slower = smaller file at the same quality, never better looking at the same
        crf). pix_fmt: the encoded pixel format: ``auto`` (default) keeps the input's (bit depth
        and chroma) or takes the encoder's closest; a name (yuv420p plays everywhere) is used as
        given, but for an odd frame size that it cannot encode (4:2:0 at 161x121), where the same
        depth with full-resolution chroma is taken. Any change from the input's depth or chroma
        is one warning line (:func:`choose_pix_fmt`). threads: encoder threads (0 = FFmpeg's
        choice). extra: further encoder options, passed as is.
    The input's colour metadata (matrix, range, primaries, transfer) is always kept.
    """

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str = AUTO
    threads: int = 0
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checked once, when made: ValueError naming the field and the fix when this PyAV build
        cannot encode with these options (the command line shows the field as its flag)."""
        import av

        try:
            codec = av.Codec(self.codec, "w")
        except Exception:  # av.codec.codec.UnknownCodecError
            raise ValueError(
                f"codec: {self.codec}: this FFmpeg (PyAV {av.__version__}) has no such encoder; "
                f"try libx264, libx265, libvpx-vp9 or libaom-av1"
            ) from None
        if codec.type != "video":
            raise ValueError(f"codec: {self.codec} is a {codec.type} encoder; give a video encoder such as libx264")
        formats = {f.name for f in codec.video_formats or ()}
        if formats and self.pix_fmt != AUTO and self.pix_fmt not in formats:
            raise ValueError(f"pix_fmt: {self.pix_fmt}; {self.codec} takes auto, {', '.join(sorted(formats))}")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise ValueError(f"crf: {self.crf} is outside 0..63 (libx264: 0 lossless, 18 transparent, 23 default)")
        if self.threads < 0:
            raise ValueError(f"threads: {self.threads}; use 0 (automatic) or more")

    def codec_options(self) -> dict[str, str]:
        """The FFmpeg private options of the encoder (strings, as ``AVDictionary`` takes them)."""
        opts: dict[str, str] = {}
        if self.crf is not None:
            if self.codec in _CRF_PRESET:
                opts["crf"] = str(self.crf)
            elif self.codec in _CRF_ONLY:
                opts.update(crf=str(self.crf), b="0")  # constant quality needs the bitrate unset
            elif self.codec in _NVENC:
                opts.update(rc="vbr", cq=str(self.crf))
        if self.preset and (self.codec in _CRF_PRESET or self.codec in _NVENC):
            opts["preset"] = self.preset
        opts.update({str(k): str(v) for k, v in self.extra.items()})
        return opts


# ---------------------------------------------------------------------- pixel format choice
@dataclass(frozen=True)
class _Layout:
    """What a pixel format keeps of a picture: bits per sample, chroma subsampling (log2 x, y), kind."""

    name: str
    bits: int
    sub: tuple[int, int]
    kind: str  # "yuv", "rgb", "gray"
    planar: bool

    @property
    def chroma(self) -> str:
        return {
            (0, 0): "4:4:4",
            (1, 0): "4:2:2",
            (1, 1): "4:2:0",
            (0, 1): "4:4:0",
            (2, 0): "4:1:1",
            (2, 2): "4:1:0",
        }.get(self.sub, f"1/{2 ** self.sub[0]}x1/{2 ** self.sub[1]} chroma")

    def describe(self) -> str:
        return f"{self.name} ({self.bits}-bit " + (self.chroma if self.kind == "yuv" else self.kind) + ")"

    def fits(self, width: int, height: int) -> bool:
        """Whether every chroma sample covers whole pixels (no encoder needs more for odd sizes)."""
        return width % (1 << self.sub[0]) == 0 and height % (1 << self.sub[1]) == 0


def _layout(name: str) -> _Layout | None:
    """The layout of an FFmpeg pixel format (None: one not to encode restored RGB into: palette,
    Bayer, alpha, bitstream, hardware surfaces)."""
    import av

    try:
        fmt = av.VideoFormat(name)
    except Exception:  # unknown to this FFmpeg
        return None
    comps = fmt.components
    if not comps or fmt.has_palette or fmt.is_bayer or fmt.is_bit_stream or any(c.is_alpha for c in comps):
        return None
    bits = max(c.bits for c in comps)
    if bits == 0 or bits > 16:
        return None
    kind = "rgb" if fmt.is_rgb else ("gray" if len(comps) == 1 else "yuv")
    sub = (0, 0)
    if kind == "yuv":
        sub = (round(math.log2(1024 / fmt.chroma_width(1024))), round(math.log2(1024 / fmt.chroma_height(1024))))
    return _Layout(name, bits, sub, kind, fmt.is_planar)


def _rank(candidates: list[str], target: _Layout) -> list[_Layout]:
    """The encoder's formats, closest to ``target`` first: no lost bits, no coarser chroma, same kind,
    no extra bits, no finer chroma, planar, then the encoder's own order."""
    ranked = []
    for i, name in enumerate(candidates):
        lay = _layout(name)
        if lay is None or name.startswith("yuvj") or (lay.kind == "gray") != (target.kind == "gray"):
            continue  # yuvj*: deprecated full-range aliases (the range travels as a tag)
        coarser = max(0, lay.sub[0] - target.sub[0]) + max(0, lay.sub[1] - target.sub[1])
        finer = max(0, target.sub[0] - lay.sub[0]) + max(0, target.sub[1] - lay.sub[1])
        ranked.append(
            (
                (
                    max(0, target.bits - lay.bits),
                    coarser,
                    lay.kind != target.kind,
                    lay.bits - target.bits,
                    finer,
                    not lay.planar,
                    i,
                ),
                lay,
            )
        )
    return [lay for _, lay in sorted(ranked, key=lambda r: r[0])]


def _opens(codec: str, width: int, height: int, pix_fmt: str, options: Mapping[str, str]) -> bool:
    """Whether ``codec`` opens at this size and pixel format (a throwaway encoder, a few ms)."""
    from fractions import Fraction

    import av

    try:
        cc = cast("av.VideoCodecContext", av.CodecContext.create(codec, "w"))
        cc.width, cc.height, cc.pix_fmt = width, height, pix_fmt
        cc.time_base, cc.framerate = Fraction(1, 25), Fraction(25)
        cc.options = dict(options)
        cc.open()
        return True
    except Exception:  # av.error.FFmpegError: the encoder refuses these settings
        return False


def choose_pix_fmt(
    encoder: EncoderOptions,
    source_fmt: str | None,
    width: int,
    height: int,
    *,
    name: str = "input",
    opens: Callable[[str, int, int, str, Mapping[str, str]], bool] | None = None,
) -> tuple[str, str | None]:
    """The pixel format to encode ``source_fmt`` frames of ``width`` x ``height`` in, and one warning
    line saying what changed (None: nothing the user did not ask for).

    ``encoder.pix_fmt`` ``auto``: the input's format if the encoder takes it, else the encoder's
    closest (same bit depth and chroma first; losing bits or chroma is said in the warning). A
    given name is kept, with a warning when it holds fewer bits than the input. Either way, when
    the frame size is odd where the format halves the chroma and the encoder will not open
    (libx264/libx265 4:2:0 at 161x121), the closest format with full chroma in that direction is
    taken instead (the size is never changed). Raises ValueError when no format opens.
    """
    import av

    opens = opens or _opens
    codec = av.Codec(encoder.codec, "w")
    formats = [f.name for f in codec.video_formats or ()]
    source = _layout(source_fmt) if source_fmt else None
    if source is not None and source_fmt is not None and source_fmt.startswith("yuvj"):
        source = _layout("yuv" + source_fmt[4:]) or source
    if encoder.pix_fmt != AUTO:
        first = encoder.pix_fmt
        target = _layout(first) or _Layout(first, 8, (1, 1), "yuv", True)
    else:
        target = source or _Layout("yuv420p", 8, (1, 1), "yuv", True)  # 8-bit 4:2:0 where the input has none
        ranked = _rank(formats, target) if formats else []
        first = (
            source_fmt
            if source_fmt in formats and _layout(source_fmt) is not None
            else ranked[0].name
            if ranked
            else source_fmt or "yuv420p"
        )
    chosen, why = first, None
    lay = _layout(first)
    if (
        lay is not None
        and not lay.fits(width, height)
        and not opens(encoder.codec, width, height, first, encoder.codec_options())
    ):
        tried = [first]
        for alt in _rank(formats, lay):
            if alt.name != first and alt.fits(width, height) and alt.bits >= lay.bits:
                tried.append(alt.name)
                if opens(encoder.codec, width, height, alt.name, encoder.codec_options()):
                    chosen = alt.name
                    break
        else:
            raise ValueError(
                f"{name}: {encoder.codec} cannot encode its odd size {width}x{height} "
                f"(tried {', '.join(tried)}); give another --codec, e.g. libvpx-vp9"
            )
        why = f"{encoder.codec} cannot encode the odd size {width}x{height} as {first}"
    out = _layout(chosen)
    lost = []
    if source is not None and out is not None:
        if out.bits < source.bits:
            lost.append(f"{source.bits}-bit as {out.bits}-bit")
        if source.kind == "yuv" and out.kind == "yuv" and (out.sub[0] > source.sub[0] or out.sub[1] > source.sub[1]):
            lost.append(f"{source.chroma} chroma as {out.chroma}")
    now = out.describe() if out is not None else chosen
    lost_text = f" ({' and '.join(lost)})" if lost else ""
    if why is not None:
        return chosen, f"{name}: {why}; writing {now} to keep the size{lost_text}"
    if not lost or source is None:
        return chosen, None
    how = (
        f"as --pix-fmt {encoder.pix_fmt} asks; --pix-fmt auto keeps the input's"
        if encoder.pix_fmt != AUTO
        else f"{encoder.codec} takes nothing closer: {', '.join(formats)}"
    )
    return chosen, f"{name}: {source.describe()} is written as {now}, {' and '.join(lost)}, {how}"
