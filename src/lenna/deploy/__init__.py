"""What a user deploys: the derived network exported to ONNX, checked under ONNX Runtime.

Trained weights come from ``evaluate-arch --weights-out`` (:func:`lenna.search.verify.save_state`).
"""

from lenna.deploy.onnx import INSTALL, check_onnx, export_onnx, load_weights

__all__ = ["INSTALL", "check_onnx", "export_onnx", "load_weights"]
