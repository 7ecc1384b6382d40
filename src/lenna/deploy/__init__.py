"""What a user deploys: the derived network exported to ONNX, checked under ONNX Runtime.

Trained weights come from ``evaluate-arch``, which saves them beside the genotype
(``network.safetensors``, or ``--weights-out``; :func:`lenna.search.verify.save_state`).
"""

from lenna.deploy.onnx import (
    INSTALL,
    check_onnx,
    check_weights_for,
    export_onnx,
    load_weights,
    weights_beside,
)

__all__ = [
    "INSTALL",
    "check_onnx",
    "check_weights_for",
    "export_onnx",
    "load_weights",
    "weights_beside",
]
