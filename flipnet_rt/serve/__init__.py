"""Serving on NVIDIA Triton Inference Server (DESIGN §9).

* :mod:`.protocol`: the models' inputs and outputs, request parsing, batching into Restorer calls
  (numpy only; shared by both paths below).
* :mod:`.server`: ``flipnet-rt serve`` on PyTriton (the bundled ``tritonserver`` with its Python
  backend; needs numpy<2, so its own environment: ``make serve``).
* :mod:`.repository`: ``flipnet-rt export-triton``, a model repository for NVIDIA's Triton
  container: one ONNX Runtime / TensorRT model per network plus a Python model running the
  sampling loop through BLS calls (:mod:`.bls`, :mod:`.triton_model`).
"""
