"""mattex.exporter: from a checkpoint to a checked ONNX graph and its engines.

`export` (tracing) and `workflow` (`mattex export`: export, then build where one can), `config`
(export parameters and presets), `passes`, `topk_select` and `graph_builder` (graph rewrites),
`dataflow`, `mixed_precision` (fp16) and `quantize` (which nodes int8 quantizes), `onnx_file`
(reading a user's ONNX file), `lint` (`mattex check`'s rules), and `build` (`mattex build`: each
engine backend's build, TensorRT's in `build.tensorrt`). The accuracy gate is
`mattex.measure.verify`; int8 calibration is `mattex.calibration.int8`.
"""
