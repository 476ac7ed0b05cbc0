"""Export: ONNX graphs (exporter), TensorRT plans (tensorrt_build) and parity checks (verify)."""
