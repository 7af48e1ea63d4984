"""mattex.plugins: TensorRT plugin integrations.

None is needed today: the exporter rewrites the refiner's top-k selection into standard ONNX
ops that TensorRT builds natively (see mattex.exporter.topk_select). A TopkLastDim plugin
rewrite (TensorRT 11) would live here.
"""
