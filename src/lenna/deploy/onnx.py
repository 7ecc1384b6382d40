"""Export a derived network to ONNX (dynamic batch) and check it under ONNX Runtime.

Why: almost nobody deploys a CPU model in PyTorch eager mode; they export it and run ONNX
Runtime. The export is only useful if the runtime computes what torch computes, so every export
is run once in ONNX Runtime on random images and compared with torch's output before the file
takes its name. ``onnx``, ``onnxscript`` and ``onnxruntime`` are an optional extra
(``pip install -e '.[onnx]'`` in the LENNA checkout).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from lenna.atomic import missing_folder, write_with
from lenna.errors import InputError
from lenna.search.folder import NETWORK_WEIGHTS
from lenna.search.genotype import Genotype
from lenna.search.network import Network
from lenna.search.verify import build, cells_key, saved_cells, saved_shape

INSTALL = "ONNX export needs the onnx extra: pip install -e '.[onnx]' in the LENNA checkout"
OPSET = 18


def require_onnx() -> object:
    """ONNX Runtime, or one line that says how to install it."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401  (the exporter torch uses)
    except ImportError:
        raise InputError(INSTALL) from None
    return onnxruntime


def load_weights(net: Network, path: str | Path) -> Network:
    """Put weights saved by :func:`lenna.search.verify.save_state` (``evaluate-arch``) into
    ``net``; weights of another network are refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise InputError(f"{path} is not a safetensors weights file ({e})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "mismatch"
        raise InputError(f"{path} holds the weights of another network ({first})") from None
    if any(not torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise InputError(f"{path} holds weights that are NaN or infinite")
    return net


def weights_beside(genotype_path: str | Path) -> Path | None:
    """The trained weights ``evaluate-arch`` saved beside a ``genotype.json`` (``None``: it
    saved none), so that ``lenna export RUN/genotype.json`` exports what was trained."""
    found = Path(genotype_path).parent / NETWORK_WEIGHTS
    return found if found.is_file() else None


def check_weights_for(genotype: Genotype, path: str | Path) -> None:
    """Refuse, in one line, weights recorded as trained for other cells: a network of other
    ops can load another's weights when their names and shapes happen to agree."""
    saved = saved_cells(path)
    if saved is not None and saved != cells_key(genotype):
        raise InputError(
            f"{path} holds the weights of another network (trained for other cells than this "
            f"genotype's); pass the right --weights, or --initial for initial weights"
        )
    shape, want = saved_shape(path), genotype.net
    io = ("in_channels", "num_classes", "resolution")  # a recipe resizes the rest, not these
    if shape is not None and any(getattr(shape, k) != getattr(want, k) for k in io):
        raise InputError(
            f"{path} holds a network for {shape.in_channels}×{shape.resolution}² images in "
            f"{shape.num_classes} classes; this genotype's takes {want.in_channels}×"
            f"{want.resolution}² in {want.num_classes}"
        )


def export_onnx(
    genotype: Genotype,
    out: str | Path,
    weights: str | Path | None = None,
    seed: int = 0,
    atol: float = 1e-4,
) -> dict:
    """Export ``genotype``'s network (trained ``weights``, else initialised with ``seed``) to
    ``out`` with a dynamic batch axis, then check ONNX Runtime against torch on batches of 1
    and 3. ``out`` is written only if the check passes; returns what was checked."""
    ort = require_onnx()
    out = Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"--out {out}: an ONNX file ends in .onnx")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: {missing_folder(out.parent)}")
    if weights is not None:
        check_weights_for(genotype, weights)
    torch.manual_seed(seed)
    n = (saved_shape(weights) if weights is not None else None) or genotype.net
    net = build(genotype, batch=1, net=n)  # the shape the weights were trained at
    if weights is not None:
        load_weights(net, weights)
    net.eval()
    x = torch.randn(2, n.in_channels, n.resolution, n.resolution)

    def write(tmp: Path) -> None:
        batch = torch.export.Dim("batch", min=1, max=4096)
        log = logging.getLogger("torch.onnx")
        level = log.level
        log.setLevel(logging.ERROR)  # the exporter's chatter (e.g. "no torchvision") is not
        try:  # the user's business
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    net,
                    (x,),
                    dynamic_shapes={"x": {0: batch}},
                    input_names=["images"],
                    output_names=["logits"],
                    opset_version=OPSET,
                    external_data=False,
                    verbose=False,
                )
        finally:
            log.setLevel(level)
        program.save(str(tmp))

    tmp_checked: dict = {}

    def write_checked(tmp: Path) -> None:
        write(tmp)
        tmp_checked.update(check_onnx(tmp, net, atol=atol, ort=ort))

    write_with(out, write_checked)
    weights_path = str(weights) if weights else None
    return {"out": str(out), "weights": weights_path, "net": n.to_dict(), **tmp_checked}


def check_onnx(
    path: str | Path, net: Network, atol: float = 1e-4, ort: object | None = None
) -> dict:
    """Run ``path`` in ONNX Runtime and ``net`` in torch on the same random images (batches of
    1 and 3); refuse the export if they differ by more than ``atol`` (relative to the logits'
    scale)."""
    ort = ort or require_onnx()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = net.net
    worst = 0.0
    g = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        x = torch.randn(batch, n.in_channels, n.resolution, n.resolution, generator=g)
        with torch.no_grad():
            want = net.eval()(x).numpy()
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        scale = max(1.0, float(np.abs(want).max()))
        worst = max(worst, float(np.abs(got - want).max()) / scale)
    if not worst <= atol:
        raise InputError(
            f"ONNX Runtime's output differs from torch's by {worst:.2g} (relative; allowed "
            f"{atol:g}): the export is not faithful, nothing was written"
        )
    return {"max_rel_diff": worst, "batches": [1, 3], "onnxruntime": ort.__version__}
