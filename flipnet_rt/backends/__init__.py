"""Backends behind one interface (:class:`~flipnet_rt.backends.base.Backend`).

``onnxruntime`` (engine directories) and ``torch`` (model directories and ``random:`` specs).
Each lives in its own module and is imported only when chosen.
"""

from .base import Backend

__all__ = ["Backend"]
