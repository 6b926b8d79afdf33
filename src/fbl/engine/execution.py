"""How a step executes: numeric precision, memory format and compilation (the fast path).

None of these change what is computed beyond rounding: autocast runs the convolutions and matmuls
in bfloat16 (or float16 with a gradient scaler, CUDA only), the loss is always computed in float32
from logits and features cast up (so FBL's ``||f||`` is float32), BatchNorm keeps float32 statistics,
channels-last only reorders memory, and ``torch.compile`` fuses kernels of the same graph.

Defaults pay off where the hardware has them: bf16 where the device runs it natively (CUDA with
bf16 support; CPUs with AMX-BF16 or AVX512-BF16), fp32 elsewhere; channels-last on; compilation
on for runs long enough to repay its start-up (see :func:`compile_pays`).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from fbl.errors import ConfigError

logger = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: Images a run must train on before compiling is on by default. Measured on a 2-core AMX CPU with
#: ResNet-32 (benchmarks/throughput.py): compilation costs about a minute and makes each image about a
#: quarter cheaper, which repays itself after roughly 15 CIFAR-10-LT epochs of 12,406 images.
COMPILE_MIN_IMAGES = 200_000


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX-BF16 or AVX512-BF16), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def native_precision(device: torch.device) -> str:
    """``bf16`` where ``device`` runs it natively, else ``fp32``."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def compile_pays(images_to_train: int) -> bool:
    """Whether compiling is worth its start-up for a run that trains on ``images_to_train`` images."""
    return images_to_train >= COMPILE_MIN_IMAGES


class CompiledOrEager(torch.nn.Module):
    """``torch.compile(model)``, falling back to ``model`` itself (with one warning) if compiling fails.

    ``torch.compile`` is lazy: a missing compiler or an unsupported operation shows up at the first
    call, so the fallback is decided there. An error the eager model raises too is not a compile
    problem and propagates.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        # Kept out of the module tree: the compiled wrapper holds the same parameters.
        object.__setattr__(self, "_compiled", torch.compile(model))
        self._use_compiled = True

    def forward(self, *args, **kwargs):
        if self._use_compiled:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compile failure means: run eagerly
                self._use_compiled = False
                logger.warning("torch.compile failed (%s); continuing eagerly", str(exc).strip().splitlines()[0])
        return self.model(*args, **kwargs)


@dataclass(frozen=True)
class Execution:
    """Resolved fast-path settings of a run (see the module docstring).

    Attributes:
        device: where the model runs.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast dtype of the forward pass).
        channels_last: models and 4-D inputs in channels-last memory format.
        compile: wrap the model with ``torch.compile`` (falls back to eager with one warning).
    """

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def resolve(
        cls, device: torch.device, precision: str = "auto", channels_last: bool = True, compile=None, images: int = 0
    ) -> Execution:
        """Settings for ``device``: ``precision="auto"`` -> :func:`native_precision`; ``compile=None`` ->
        :func:`compile_pays` for a run of ``images`` training images."""
        precision = str(precision).lower()  # one of config.PRECISIONS, checked with the config
        if precision == "auto":
            precision = native_precision(device)
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError("--precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("--precision bf16: this GPU has no bfloat16 support; use fp16 or fp32")
        return cls(device, precision, bool(channels_last), compile_pays(images) if compile is None else bool(compile))

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.precision)

    def autocast(self):
        """The forward pass's autocast context (``nullcontext`` for fp32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling so small gradients do not flush to zero; bf16 and fp32 do not."""
        return torch.amp.GradScaler("cuda") if self.precision == "fp16" else None

    def configure_backends(self) -> None:
        """Make ``fp32`` mean float32 on CUDA: PyTorch runs cuDNN convolutions in TF32 (a 10-bit
        mantissa) by default, so an fp32 run would otherwise not be the full-precision reference it is
        meant to be. Other precisions and devices keep PyTorch's defaults."""
        if self.device.type == "cuda" and self.precision == "fp32":
            torch.backends.cudnn.allow_tf32 = False
            torch.set_float32_matmul_precision("highest")

    def prepare_model(self, model: torch.nn.Module, wrap=None) -> torch.nn.Module:
        """``model`` in the chosen memory format (in place), then ``wrap``-ped (DDP) and compiled when
        asked; the returned module is what the loops call. Parameters are shared, so checkpoints are
        written from ``model`` itself."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model = wrap(model) if wrap is not None else model
        return CompiledOrEager(model) if self.compile else model

    def prepare_batch(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on the device (non-blocking from pinned memory) in the model's memory format."""
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, target.to(self.device, non_blocking=non_blocking)

    def optimizer_options(self) -> dict:
        """The optimizer's fused (CUDA) or multi-tensor (``foreach``) implementation."""
        return {"fused": True} if self.device.type == "cuda" else {"foreach": True}

    def describe(self) -> str:
        return f"{self.precision}, {'channels-last' if self.channels_last else 'NCHW'}, " + (
            "compiled" if self.compile else "eager"
        )
