"""Backends behind one interface (:class:`~flipnet_rt.backends.base.Backend`).

``onnxruntime`` (engine directories: CPU, and CUDA/TensorRT execution providers), ``tensorrt``
(native plans from ``flipnet-rt build``) and ``torch`` (model directories and ``random:`` specs).
:mod:`.registry` declares each (name, device, artifact, ``probe``, ``open``); :mod:`.select` walks
it once. Each backend lives in its own module and is imported only when chosen; shared CUDA
helpers are in :mod:`.cuda`, the fix messages in :mod:`.fixes`.
"""

from .base import Backend, BackendUnavailable

__all__ = ["Backend", "BackendUnavailable"]
