"""mattex.exporter: BGMv2 to one ONNX graph (export), its graph passes, the TensorRT linter
(check), the accuracy gate (verify) and TensorRT engine building (build)."""
