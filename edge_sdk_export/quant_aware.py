"""Quantization-aware distillation: distil a torch student with INT8 rounding simulated in its forward pass.

Post-training INT8 rounds every weight and every activation the quantized file computes. When that loss is spread
over a whole network rather than sitting in a few layers (the pruned zoo MobileFaceNet's TFLite file: no op kept
in float moved its worst gate by more than half its miss), keeping layers in float cannot fix it; letting the
weights learn around the rounding can. :func:`simulated_int8` makes a module compute as its INT8 file would, in
float: every Conv2d / Linear weight rounded per output channel to symmetric int8 and every input of those layers
rounded per tensor to symmetric int8 at a range calibrated once on sample crops (the coarsest of the targets'
activation schemes: TensorRT's; the uint8 activations of the other targets have twice the levels). Gradients pass
the rounding unchanged inside the range (the straight-through estimator ``torch.fake_quantize_*`` implements).
When the context ends the module is plain float again, with the weights it learned; the export then quantizes it
per target as always (ranges calibrated afresh).

Example (a two-layer net; inside the context its outputs carry the rounding, after it they do not)::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    >>> x = torch.randn(8, 3, 16, 16)
    >>> float_out = net(x)
    >>> with simulated_int8(net, x) as summary:
    ...     rounded = net(x)
    >>> summary["layers"], bool((rounded - float_out).abs().max() > 0), bool(torch.equal(net(x), float_out))
    (2, True, True)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

QMAX = 127  # symmetric int8: [-127, 127], zero point 0 (weights of every target; TensorRT's activations)
ACTIVATION_PERCENTILE = 99.99  # of |x| per layer input, on the calibration sample (the exporters use 99.999)
MAX_SAMPLED_VALUES = 1_000_000  # values per tensor fed to the percentile (an even stride through it)


def _quantized_layers(model: Any) -> list[Any]:
    from torch import nn

    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _abs_percentile(x: Any, percentile: float) -> float:
    values = x.detach().abs().flatten()
    stride = max(1, values.numel() // MAX_SAMPLED_VALUES)
    return float(np.percentile(values[::stride].cpu().numpy(), percentile))


def _input_ranges(model: Any, layers: list[Any], sample: Any, percentile: float) -> dict[int, float]:
    """|input| at ``percentile`` of every layer on ``sample`` (the model's own forward, no rounding yet)."""
    import torch

    ranges: dict[int, float] = {}

    def record(module: Any, inputs: tuple[Any, ...]) -> None:
        ranges[id(module)] = max(ranges.get(id(module), 0.0), _abs_percentile(inputs[0], percentile))

    hooks = [layer.register_forward_pre_hook(record) for layer in layers]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


def _per_channel_int8() -> Any:
    """A parametrization: the weight rounded to symmetric int8 per output channel (axis 0), as every target's."""
    import torch
    from torch import nn

    class PerChannelInt8(nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            dims = tuple(range(1, weight.dim()))
            scale = (weight.detach().abs().amax(dim=dims) / QMAX).clamp_min(1e-12).float()
            zero = torch.zeros(weight.shape[0], dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -QMAX, QMAX)

    return PerChannelInt8()


@contextlib.contextmanager
def simulated_int8(model: Any, sample: Any, percentile: float = ACTIVATION_PERCENTILE) -> Iterator[dict[str, Any]]:
    """Inside the context ``model`` computes with INT8 rounding simulated (see the module docstring); yields a
    summary (layers rounded, their input ranges). ``sample``: a batch in the model's input layout to calibrate
    the activation ranges on. The weights stay float parameters that train as usual; on exit the rounding is
    removed and the module keeps the weights it has then."""
    import torch
    from torch.nn.utils import parametrize

    layers = _quantized_layers(model)
    ranges = _input_ranges(model, layers, sample, percentile)

    def round_input(module: Any, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        scale = max(ranges.get(id(module), 0.0), 1e-8) / QMAX
        return (torch.fake_quantize_per_tensor_affine(inputs[0], scale, 0, -QMAX, QMAX), *inputs[1:])

    hooks = [layer.register_forward_pre_hook(round_input) for layer in layers]
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", _per_channel_int8())
    log.info("quantization-aware: INT8 rounding simulated in %d layers (weights per channel, inputs per tensor)",
             len(layers))  # fmt: skip
    try:
        yield {"layers": len(layers), "activation_percentile": percentile, "input_ranges": sorted(ranges.values())}
    finally:
        for hook in hooks:
            hook.remove()
        for layer in layers:
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
