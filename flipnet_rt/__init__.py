"""flipnet-rt: the production runtime for FLIPNET blind face restoration.

``import flipnet_rt`` needs only numpy and onnxruntime; torch-backed parts
(:mod:`flipnet_rt.models`, :mod:`flipnet_rt.pipeline`) are imported on use.
"""

__version__ = "0.1.0"
