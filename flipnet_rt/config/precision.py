"""Numeric precision, spelled one way everywhere (``--precision``, manifests, the torch dtype)."""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    """``fp32``, ``fp16`` or ``bf16``; ``parse`` also takes the numpy/torch names (``float16``)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"

    @property
    def dtype(self) -> str:
        """The numpy/torch dtype name: ``float32``, ``float16``, ``bfloat16``."""
        return {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[self.value]

    @classmethod
    def parse(cls, text: str | Precision) -> Precision:
        if isinstance(text, Precision):
            return text
        for member in cls:
            if text in (member.value, member.dtype):
                return member
        raise ValueError(f"precision {text!r}: use one of {', '.join(m.value for m in cls)}")

    def __str__(self) -> str:
        return self.value
