"""wsdeploy.export: ONNX (fp32/fp16/INT8, card in metadata, parity-checked), `.pt2`
(torch.export / AOTInductor) and TensorRT engines.

    from wsdeploy.export import to_onnx, to_pt2, to_tensorrt
    to_onnx("model.pt", "model.onnx")                       # dynamic batch/H/W, parity-checked
    to_onnx("model.pt", "model_int8.onnx", int8=True, calibration="images/")
    to_pt2("model.pt", "model.pt2")
    to_tensorrt("model.onnx", "model.engine", fp16=True)    # needs TensorRT (GPU)

onnxruntime and tensorrt are imported inside the functions that need them.
"""
from wsdeploy.export.onnx_export import DEFAULT_OPSET, OnnxExport, read_onnx_info, to_onnx
from wsdeploy.export.parity import TOLERANCES, ParityError, ParityReport, Tolerance, check_parity, compare_backends
from wsdeploy.export.pt2 import Pt2Export, to_pt2
from wsdeploy.export.tensorrt import TensorRTExport, optimization_profile, to_tensorrt
from wsdeploy.export.triton import TritonExport, to_triton

__all__ = [
    "DEFAULT_OPSET", "OnnxExport", "ParityError", "ParityReport", "Pt2Export", "TOLERANCES", "TensorRTExport",
    "Tolerance", "check_parity", "compare_backends", "optimization_profile", "read_onnx_info", "to_onnx",
    "to_pt2", "to_tensorrt", "TritonExport", "to_triton",
]
