"""Encoder settings for the restored video stream (the other streams are copied, never re-encoded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

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
        crf). pix_fmt: the encoded pixel format (yuv420p plays everywhere). threads: encoder
        threads (0 = FFmpeg's choice). extra: further encoder options, passed as is.
    The input's colour metadata (matrix, range, primaries, transfer) is always kept.
    """

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str = "yuv420p"
    threads: int = 0
    extra: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> "EncoderOptions":
        """Raises ValueError naming the fix when this PyAV build cannot encode with these options."""
        import av

        try:
            codec = av.Codec(self.codec, "w")
        except Exception:  # av.codec.codec.UnknownCodecError
            raise ValueError(f"--codec {self.codec}: this FFmpeg (PyAV {av.__version__}) has no such encoder; "
                             f"try libx264, libx265, libvpx-vp9 or libaom-av1") from None
        if codec.type != "video":
            raise ValueError(f"--codec {self.codec}: is a {codec.type} encoder; give a video encoder such as libx264")
        formats = {f.name for f in codec.video_formats or ()}
        if formats and self.pix_fmt not in formats:
            raise ValueError(f"--pix-fmt {self.pix_fmt}: {self.codec} takes {', '.join(sorted(formats))}")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise ValueError(f"--crf {self.crf}: outside 0..63 (libx264: 0 lossless, 18 transparent, 23 default)")
        if self.threads < 0:
            raise ValueError(f"--encoder-threads {self.threads}: must be 0 (automatic) or more")
        return self

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
