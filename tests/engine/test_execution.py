"""The fast path changes nothing but rounding: bf16 vs fp32 losses and gradients, resume exactness
with bf16 + channels-last, checkpoints that load into an eager fp32 model, and the defaults."""

import json

import pytest
import torch

from fbl.cli import main
from fbl.engine.checkpoint import load_checkpoint
from fbl.engine.execution import COMPILE_MIN_IMAGES, CompiledOrEager, Execution, compile_pays
from fbl.errors import ConfigError
from fbl.losses import create_loss, list_losses, loss_class
from fbl.models import ForwardWithFeatures
from fbl.models.normed_linear import NormedLinear

COUNTS = [500, 120, 40, 9, 3]
CPU = torch.device("cpu")


class _Tiny(ForwardWithFeatures, torch.nn.Module):
    """A backbone (linear + ReLU, like a pooled CNN feature) and a linear head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.fc = torch.nn.Linear(24, 16), torch.nn.Linear(16, len(COUNTS))

    def forward_features(self, x):
        return torch.relu(self.body(x))

    def forward_head(self, f):
        return self.fc(f)


@pytest.mark.parametrize("name", [n for n in list_losses() if not loss_class(n).needs_experts])
def test_bf16_forward_gives_the_fp32_loss_and_gradients_within_bf16_rounding(name):
    """Only the backbone runs in bf16; head and loss are float32. Stated tolerance: the loss within
    1% and every gradient within 5% of float32 in norm (bf16 keeps 8 mantissa bits, ~0.4% per
    rounding; single gradient entries can cancel, so norms are compared)."""
    kwargs = {"total_epochs": 10} if "fbl" in name else {}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 24, generator=g), torch.randint(0, len(COUNTS), (64,), generator=g)
    results = {}
    for precision in ("fp32", "bf16"):
        model = _Tiny()
        if name == "ldam":  # LDAM's s = 30 assumes cosine logits, as the trainer's normed head gives
            model.fc = NormedLinear(16, len(COUNTS))
        criterion = create_loss(name, COUNTS, **kwargs)
        criterion.set_epoch(9)
        with Execution(CPU, precision).autocast():
            logits, features = model(x, return_features=True)
        assert logits.dtype == torch.float32 and features.dtype == torch.float32
        loss = criterion(logits, y, features=features)
        loss.backward()
        results[precision] = [loss.detach()] + [p.grad for p in model.parameters()]
    fp32, bf16 = results["fp32"], results["bf16"]
    assert abs(float(bf16[0] - fp32[0])) <= 1e-2 * abs(float(fp32[0]))
    for a, b in zip(fp32[1:], bf16[1:], strict=True):
        assert (b - a).norm() <= 5e-2 * a.norm(), float((b - a).norm() / a.norm())


def test_resolution_of_defaults_and_bad_requests():
    assert Execution.resolve(CPU, "fp32", compile=None, images=COMPILE_MIN_IMAGES - 1).compile is False
    assert Execution.resolve(CPU, "fp32", compile=None, images=COMPILE_MIN_IMAGES).compile is True
    assert compile_pays(10**7) and not compile_pays(10)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Execution.resolve(CPU, "fp16")
    # an unknown precision is the config's to refuse (tests/test_config.py), checked once
    assert Execution.resolve(CPU, "auto").precision in ("fp32", "bf16")


@pytest.mark.parametrize("precision, tf32_after", [("fp32", False), ("bf16", True)])
def test_fp32_on_cuda_switches_tf32_off_and_other_settings_leave_it(monkeypatch, precision, tf32_after):
    # The flags are plain settings, so this runs without a GPU; both are restored afterwards.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    matmul = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        Execution(torch.device("cuda"), precision).configure_backends()
        assert torch.backends.cudnn.allow_tf32 is tf32_after
        assert torch.get_float32_matmul_precision() == ("high" if tf32_after else "highest")
        torch.set_float32_matmul_precision("high")
        Execution(CPU, "fp32").configure_backends()  # the CPU has no TF32: nothing changes
        assert torch.backends.cudnn.allow_tf32 is tf32_after
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(matmul)


def test_a_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    model = torch.nn.Linear(3, 2)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nsecond line")

    wrapper = CompiledOrEager(model)
    object.__setattr__(wrapper, "_compiled", broken)
    x = torch.randn(4, 3)
    torch.testing.assert_close(wrapper(x), model(x))
    wrapper(x)
    assert caplog.text.count("torch.compile failed (no C++ compiler); continuing eagerly") == 1


FAST = [
    "--preset",
    "digits-lt",
    "--epochs",
    "4",
    "--device",
    "cpu",
    "--quiet",
    "--precision",
    "bf16",
    "--channels-last",
]


def test_resume_is_exact_on_the_bf16_channels_last_path(tmp_path):
    from fbl.config import resolve_config
    from fbl.engine.trainer import train

    full = tmp_path / "full"
    assert main(["train", *FAST, "--out", str(full)]) == 0
    overrides = {"epochs": 4, "device": "cpu", "quiet": True, "precision": "bf16", "channels_last": True}
    cfg = resolve_config("digits-lt", overrides={**overrides, "out": str(tmp_path / "b")})

    def interrupt_at_epoch_2(iterable, **kwargs):
        for item in iterable:
            if kwargs.get("desc") == "epochs" and item == 2:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=interrupt_at_epoch_2)
    assert main(["train", "--resume", str(tmp_path / "b"), "--device", "cpu", "--quiet"]) == 0
    uninterrupted, resumed = load_checkpoint(full)["model"], load_checkpoint(tmp_path / "b")["model"]
    for key in uninterrupted:
        assert torch.equal(uninterrupted[key], resumed[key]), key


def test_a_fast_path_checkpoint_evaluates_in_an_eager_fp32_model(tmp_path, monkeypatch):
    from fbl.engine.evaluate_checkpoint import evaluate_checkpoint

    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 0
    state = load_checkpoint(out)["model"]
    assert not any(key.startswith(("_orig_mod.", "model._compiled")) for key in state)
    configured = []
    monkeypatch.setattr(Execution, "configure_backends", lambda self: configured.append(self))
    result = evaluate_checkpoint(str(out), device="cpu", precision="fp32")  # builds the plain fp32 model
    assert result["top1"] is not None
    # fbl eval sets the backends as an fp32 training run does (on CUDA: no TF32), once, for fp32 eager
    assert [(e.precision, e.channels_last, e.compile) for e in configured] == [("fp32", False, False)]
    configured.clear()
    evaluate_checkpoint(str(out), device="cpu")  # by default as the run ran (its provenance)
    provenance = json.loads((out / "summary.json").read_text())["provenance"]
    ran = (provenance["precision"], provenance["channels_last"], provenance["compile"] == "compiled")
    assert [(e.precision, e.channels_last, e.compile) for e in configured] == [ran]
