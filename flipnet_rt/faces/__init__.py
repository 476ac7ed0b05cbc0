"""Faces in whole images (DESIGN §6): detect, align, restore in one batch, paste back.

- :mod:`.types`: ``Face``, ``FaceDetector`` (protocol), ``FaceResult``, ``BorderMode``.
- :mod:`.align`: the FFHQ template, ``estimate_affine``, ``warp_faces`` (pure, OpenCV).
- :mod:`.paste`: ``paste_faces`` (feathered mask inside each face's box; pure, OpenCV).
- :mod:`.detail`: ``keep_detail`` (the input's detail above the model's band).
- :mod:`.mtcnn`: ``MtcnnDetector`` (three ONNX networks through ONNX Runtime).
- :mod:`.dlib_detector`: ``DlibDetector`` (HOG + 68-point predictor reduced to 5 points).
- :mod:`.detectors`: ``load_detector(name)``.
- :mod:`.pipeline`: ``FaceRestorer`` over a :class:`flipnet_rt.runtime.restorer.Restorer`.
- :mod:`.report`: the ``--report`` JSON and the ``--save-faces`` files.

Nothing here imports OpenCV, dlib or ONNX Runtime at import time.
"""

from .types import LANDMARK_NAMES, BorderMode, Face, FaceDetector, FaceResult, sort_faces

__all__ = ["BorderMode", "Face", "FaceDetector", "FaceResult", "LANDMARK_NAMES", "sort_faces"]
