"""wsdeploy.export: ONNX (fp32/fp16/INT8, card in metadata, parity-checked), `.pt2`
(torch.export / AOTInductor) and TensorRT engines.

    from wsdeploy.export import to_onnx, to_pt2, to_tensorrt
    to_onnx("model.pt", "model.onnx")                       # dynamic batch/H/W, parity-checked
    to_onnx("model.pt", "model_int8.onnx", int8=True, calibration="images/")
    to_pt2("model.pt", "model.pt2")
    to_onnx("model.pt", "model_fp16.onnx", fp16=True)
    to_tensorrt("model_fp16.onnx", "model.engine")          # needs TensorRT (GPU); precision from the ONNX
    check_files("model.engine", "model.pt")                  # parity of any two model files

onnxruntime and tensorrt are imported inside the functions that need them.
"""
from wsdeploy.export.onnx_export import DEFAULT_OPSET, OnnxExport, read_onnx_info, to_onnx
from wsdeploy.export.parity import (
    ENGINE_TOLERANCES, TOLERANCES, ParityError, ParityReport, Tolerance, check_files, check_parity, compare_backends,
)
from wsdeploy.export.pt2 import Pt2Export, to_pt2
from wsdeploy.export.tensorrt import TensorRTExport, int8_scheme, optimization_profile, to_tensorrt
from wsdeploy.export.triton import TritonExport, to_triton

__all__ = [
    "DEFAULT_OPSET", "ENGINE_TOLERANCES", "OnnxExport", "ParityError", "ParityReport", "Pt2Export", "TOLERANCES", "TensorRTExport",
    "Tolerance", "check_files", "check_parity", "compare_backends", "int8_scheme", "optimization_profile",
    "read_onnx_info", "to_onnx",
    "to_pt2", "to_tensorrt", "TritonExport", "to_triton",
]
