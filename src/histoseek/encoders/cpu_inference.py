"""Faster CPU inference for frozen image towers: channels-last, traced, frozen, oneDNN-fused.

On 2 CPU cores an eager EfficientNet-Lite0 spends most of its time in per-op overhead and
memory-bound BatchNorm/activation passes between depthwise convolutions. TorchScript's
``freeze`` + ``optimize_for_inference`` folds BatchNorm into the convolutions, fuses
activations and pre-packs weights for oneDNN: about 2x the eager throughput here
(``benchmarks/bench_encode_speed.py`` measures both side by side). ``torch.compile`` reaches
the same speed but compiles for about a minute, too slow for a CLI call.

The optimised module is checked against the eager one on a batch of another size before use;
if tracing fails or the outputs differ, the eager module is used and the reason logged.
``HISTOSEEK_CPU_OPTIMISE=0`` turns the whole thing off.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

#: Largest absolute difference allowed between optimised and eager unit vectors (fp32 rounding
#: of folded BatchNorm moves them by about 1e-5).
MAX_ABS_DIFF = 1e-3
ENV_SWITCH = "HISTOSEEK_CPU_OPTIMISE"


def optimise_for_cpu(
    module: torch.nn.Module, input_px: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return a faster callable equivalent to ``module`` on ``[n, 3, input_px, input_px]`` CPU
    batches of any ``n``, or ``module`` itself when that cannot be had safely."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return module
    module = module.eval()
    try:
        optimised = _trace_and_fuse(module, input_px)
        _check_equivalent(module, optimised, input_px)
    except Exception as error:  # any failure means: keep the eager module
        log.info("CPU inference optimisation not used (%s); running the eager model", error)
        return module
    return _ChannelsLast(optimised)


class _ChannelsLast:
    """Hand batches to the optimised graph in the layout it was traced with."""

    def __init__(self, graph: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.graph = graph

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x.contiguous(memory_format=torch.channels_last))


def _trace_and_fuse(module: torch.nn.Module, input_px: int) -> torch.jit.ScriptModule:
    # traced on a copy: channels_last conversion must not change the caller's module
    import copy

    traced_module = copy.deepcopy(module).to(memory_format=torch.channels_last)
    example = _example(2, input_px)
    with warnings.catch_warnings(), torch.inference_mode():
        # torch.jit is deprecated in favour of torch.compile, which compiles for a minute
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(traced_module, example, check_trace=False)
        frozen = torch.jit.freeze(traced)
        return torch.jit.optimize_for_inference(frozen)


def _check_equivalent(eager: torch.nn.Module, optimised: torch.jit.ScriptModule,
                      input_px: int) -> None:
    """A batch size other than the traced one catches shapes baked in by tracing."""
    x = _example(3, input_px)
    with torch.inference_mode():
        expected = eager(x).float()
        got = optimised(x.contiguous(memory_format=torch.channels_last)).float()
    if got.shape != expected.shape:
        raise ValueError(f"optimised output shape {tuple(got.shape)} != {tuple(expected.shape)}")
    diff = float((got - expected).abs().max())
    if not diff <= MAX_ABS_DIFF:
        raise ValueError(f"optimised outputs differ from eager by {diff:.2e}")


def _example(n: int, input_px: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, input_px, input_px, generator=generator)
