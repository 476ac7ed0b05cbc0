"""flipnet-rt: the production runtime for FLIPNET blind face restoration.

``import flipnet_rt`` needs only numpy, onnxruntime and Pillow. The layers, bottom up:

- :mod:`flipnet_rt.engine`: network I/O specs, engine manifests, opening engine/model directories;
- :mod:`flipnet_rt.backends`: one interface, a registry of backends (ONNX Runtime, TensorRT, torch);
- :mod:`flipnet_rt.sampling`: stateless samplers and schedules;
- :mod:`flipnet_rt.runtime.core`: the diffusion core (float images at the model's resolution in and out);
- :mod:`flipnet_rt.imaging` and :mod:`flipnet_rt.runtime.restorer`: files, size policy, colour fix; the
  public :class:`~flipnet_rt.runtime.restorer.Restorer`;
- :mod:`flipnet_rt.faces`, :mod:`flipnet_rt.video`, :mod:`flipnet_rt.serve`: whole images, video
  streams, serving on Triton;
- :mod:`flipnet_rt.cli`: the ``flipnet-rt`` command line.

torch-backed parts (:mod:`flipnet_rt.models`, the torch backend) are imported on use.
"""

__version__ = "0.1.0"
