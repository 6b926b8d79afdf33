"""Diagnostics for one finished CIFAR-10-LT run: how far its test numbers are from the paper's, and why.

    python analysis/fidelity.py RUN [RUN ...] --out results/cifar10-lt-protocol/diagnostics.md

(writes ``diagnostics.md``, ``diagnostics.json`` and ``diagnostics.png`` there.)

For each run folder (from ``fbl train``) it measures, from the run's last checkpoint:

* **the JPEG caveat, paired**: top-1 on the 1,000 images of ``test_batch_lossless_1000`` (the
  official test batch's first 1,000, lossless) and on the same images as ``../shared``'s
  JPEG-decoded test batch holds them (ordered differently there: each lossless image is paired with
  its nearest JPEG image of the same label, and the pairing must be one-to-one);
* **the reporting rule**: test top-1 at the last epoch (our headline) against the best epoch chosen
  on the test set, the paper's reporting, read from ``metrics.jsonl``;
* **the prior the classifier carries**: test top-1 / many / medium after post-hoc logit adjustment
  ``z - tau log(prior)`` over a range of tau. A model whose decisions are balanced peaks at tau = 0;
  for cross-entropy the balanced-error correction is tau = +1 in theory (Menon et al., ICLR 2021),
  as it favours the head by the log prior; a loss that over-corrects towards the tail peaks at
  tau < 0. This curve is a diagnostic read on the test set: it chooses no reported number.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from matplotlib.figure import Figure

from fbl.data.shot_groups import shot_groups
from fbl.engine.evaluate import forward_batches
from fbl.engine.execution import Execution
from fbl.engine.experiment import load_trained
from fbl.posthoc import logit_adjust
from fbl.reports.run_folder import load_run

TAUS = [t / 4 for t in range(-16, 9)]  # -4.0 ... 2.0


@torch.inference_mode()
def collect(
    model: torch.nn.Module, loader, logit_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (times the loss's ``logit_scale``, as evaluation does), targets and normalised images, in order."""
    logits, targets, images = [], [], []
    execution = Execution(next(model.parameters()).device)
    for batch, target, batch_logits, _ in forward_batches(model, loader, execution, logit_scale):
        logits.append(batch_logits)
        targets.append(target)
        images.append(batch.flatten(1).float())
    return torch.cat(logits), torch.cat(targets), torch.cat(images)


def pair_with_jpeg(lossless, lossless_targets, jpeg, jpeg_targets) -> tuple[torch.Tensor, float]:
    """Index of each lossless image's JPEG copy (nearest image of the same label) and the largest
    distance of a pair relative to the lossless image's norm; refuses a pairing that is not one-to-one."""
    distance = torch.cdist(lossless, jpeg)
    distance[lossless_targets[:, None] != jpeg_targets[None, :]] = float("inf")
    nearest, index = distance.min(dim=1)
    if index.unique().numel() != index.numel():
        raise SystemExit("two lossless test images matched the same JPEG image: the pairing is ambiguous")
    relative = (nearest / lossless.norm(dim=1)).max().item()
    return index, relative


def per_class_accuracy(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> list[float]:
    return [100.0 * (predictions[targets == c] == c).float().mean().item() for c in range(num_classes)]


def shot_means(per_class: list[float], counts: list[int]) -> dict[str, float | None]:
    groups = shot_groups(counts)
    return {name: sum(per_class[c] for c in group) / len(group) if group else None for name, group in groups.items()}


def top1(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    return 100.0 * (predictions == targets).float().mean().item()


def reporting_rule(run: Path) -> dict:
    epochs = load_run(run).epochs
    best = max(epochs, key=lambda e: e["eval"]["top1"])
    last = epochs[-1]
    tail = [e["eval"]["top1"] for e in epochs[-20:]]
    return {
        "last_epoch": last["epoch"],
        "last_top1": last["eval"]["top1"],
        "best_on_test_epoch": best["epoch"],
        "best_on_test_top1": best["eval"]["top1"],
        "last20_min": min(tail),
        "last20_max": max(tail),
    }


def diagnose(run: Path, data_dir: str | None) -> dict:
    trained = load_trained(str(run / "checkpoints" / "last.pt"), device=torch.device("cpu"), data_dir=data_dir)
    cfg, model = trained.cfg, trained.model.eval()
    counts = list(trained.data.class_counts)
    num_classes = len(counts)

    scale = trained.logit_scale
    test_logits, test_targets, test_images = collect(model, trained.eval_loader("test"), scale)
    lossless_logits, lossless_targets, lossless_images = collect(model, trained.eval_loader("test_lossless"), scale)
    pair, worst_pair_distance = pair_with_jpeg(lossless_images, lossless_targets, test_images, test_targets)
    jpeg_pred, lossless_pred = test_logits[pair].argmax(1), lossless_logits.argmax(1)

    curves = {
        "test": adjustment_curve(test_logits, test_targets, counts),
        "test_lossless": adjustment_curve(lossless_logits, lossless_targets, counts),
    }
    return {
        "run": str(run),
        "loss": cfg.loss.loss,
        "lambda": cfg.loss.lambda_,
        "epochs": cfg.optim.epochs,
        "class_counts": counts,
        "paired_jpeg_vs_lossless": {
            "images": len(pair),
            "worst_pair_relative_distance": worst_pair_distance,
            "jpeg_top1": top1(jpeg_pred, lossless_targets),
            "lossless_top1": top1(lossless_pred, lossless_targets),
            "same_prediction": top1(jpeg_pred, lossless_pred),
            "jpeg_per_class": per_class_accuracy(jpeg_pred, lossless_targets, num_classes),
            "lossless_per_class": per_class_accuracy(lossless_pred, lossless_targets, num_classes),
        },
        "test_top1": top1(test_logits.argmax(1), test_targets),
        "reporting_rule": reporting_rule(run),
        "logit_adjust_curves": curves,
        "best_tau": {split: max(curve, key=lambda point: point["top1"]) for split, curve in curves.items()},
    }


def adjustment_curve(logits: torch.Tensor, targets: torch.Tensor, counts: list[int]) -> list[dict]:
    """Top-1 and shot-group accuracy after ``logit_adjust(logits, counts, tau)`` for every tau in TAUS."""
    curve = []
    for tau in TAUS:
        predictions = logit_adjust(logits, counts, tau).argmax(1)
        per_class = per_class_accuracy(predictions, targets, len(counts))
        curve.append({"tau": tau, "top1": top1(predictions, targets), **shot_means(per_class, counts)})
    return curve


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(results: list[dict]) -> str:
    lines = [
        "# CIFAR-10-LT fidelity diagnostics",
        "",
        "Written by `python analysis/fidelity.py` from each run's last checkpoint and `metrics.jsonl`.",
        "",
        "## JPEG test set and reporting rule",
        "",
        "| Run | Test top-1, last epoch | Best epoch on test (paper's rule) | Last 20 epochs | "
        "Lossless 1,000: JPEG copies | lossless | same prediction |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rule, pair = r["reporting_rule"], r["paired_jpeg_vs_lossless"]
        lines.append(
            f"| {Path(r['run']).name} | {_fmt(rule['last_top1'])} (epoch {rule['last_epoch']}) "
            f"| {_fmt(rule['best_on_test_top1'])} (epoch {rule['best_on_test_epoch']}) "
            f"| {_fmt(rule['last20_min'])}–{_fmt(rule['last20_max'])} "
            f"| {_fmt(pair['jpeg_top1'])} | {_fmt(pair['lossless_top1'])} | {_fmt(pair['same_prediction'])}% |"
        )
    lines += ["", "## Per-class accuracy on the lossless 1,000 and on their JPEG copies", ""]
    for r in results:
        pair = r["paired_jpeg_vs_lossless"]
        classes = range(len(pair["lossless_per_class"]))
        lines += [
            f"### {Path(r['run']).name}",
            "",
            "| Class | " + " | ".join(str(c) for c in classes) + " |",
            "|---|" + "---|" * len(classes),
            "| JPEG copies | " + " | ".join(f"{v:.1f}" for v in pair["jpeg_per_class"]) + " |",
            "| lossless | " + " | ".join(f"{v:.1f}" for v in pair["lossless_per_class"]) + " |",
            "",
        ]
    lines += [
        "## Post-hoc logit adjustment z − τ log(prior) (diagnostic, chooses nothing)",
        "",
        "τ > 0 moves decisions towards the tail, τ < 0 towards the head; the τ where top-1 peaks says",
        "which way, and by how many log-priors, the trained classifier leans. Test = the 10,000",
        "JPEG-decoded test images; lossless = the 1,000 lossless ones.",
        "",
    ]
    for r in results:
        best, curves = r["best_tau"], r["logit_adjust_curves"]
        lossless_top1 = r["paired_jpeg_vs_lossless"]["lossless_top1"]
        lines += [
            f"### {Path(r['run']).name}",
            "",
            f"Peak on test: τ = {best['test']['tau']:g}, top-1 {_fmt(best['test']['top1'])} "
            f"(τ = 0: {_fmt(r['test_top1'])}). Peak on lossless: τ = {best['test_lossless']['tau']:g}, "
            f"top-1 {_fmt(best['test_lossless']['top1'])} (τ = 0: {_fmt(lossless_top1)}).",
            "",
            "| τ | Test top-1 | Many | Medium | Lossless top-1 | Many | Medium |",
            "|---|---|---|---|---|---|---|",
        ]
        for p, q in zip(curves["test"], curves["test_lossless"], strict=True):
            cells = [_fmt(p[k]) for k in ("top1", "many", "medium")] + [_fmt(q[k]) for k in ("top1", "many", "medium")]
            lines.append(f"| {p['tau']:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def paired_figure(results: list[dict], path: Path) -> Path:
    """Per-class accuracy against training count: lossless (solid) and their JPEG copies (dashed)."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    for i, r in enumerate(results):
        pair, name = r["paired_jpeg_vs_lossless"], Path(r["run"]).name
        ax.plot(r["class_counts"], pair["lossless_per_class"], "o-", color=f"C{i}", label=f"{name}, lossless")
        ax.plot(r["class_counts"], pair["jpeg_per_class"], "s--", color=f"C{i}", label=f"{name}, JPEG copies")
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class")
    ax.set_ylabel("top-1 (%), same 1,000 images")
    ax.legend(fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=80, format="png")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--data-dir", default=None, help="CIFAR folder, if not the one the run recorded")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write (JSON beside it)")
    args = parser.parse_args()
    results = [diagnose(run, args.data_dir) for run in args.runs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    figure = paired_figure(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out}, {args.out.with_suffix('.json')} and {figure}")


if __name__ == "__main__":
    main()
