"""The report's long-tail, test-prior, interval, paired-difference and provenance tables, from run folders."""

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from fbl.aggregation_record import save_aggregation
from fbl.label_shift import SADE_PRIORS
from fbl.predictions import Predictions, save_predictions
from fbl.reports import write_report
from fbl.reports.provenance import COLUMNS as PROVENANCE_COLUMNS
from fbl.reports.provenance import provenance_rows
from fbl.reports.run_folder import Run

from ._fake_runs import CLASS_COUNTS, NUM_CLASSES, per_class_acc, write_two_methods

IMAGES_PER_CLASS = 20
#: Top-1 share of the test images each fake method gets right: every 10 images, the first 7 (ce) or 8 (fbl).
RIGHT_OF_TEN = {"ce": 7, "fbl60": 8}
PROVENANCE = {
    "started_at": "2026-01-02T03:04:05+00:00", "ended_at": "2026-01-02T04:05:06+00:00", "seconds": 3661.0,
    "world_size": 2, "device": "cuda:0", "device_name": "NVIDIA H200", "devices": ["NVIDIA H200"],
    "cpu": "Intel(R) Xeon(R) Platinum 8480+", "cpu_amx_bf16": True, "cpu_avx512_bf16": True, "threads": 8,
    "python": "3.11.7", "torch": "2.5.0", "torchvision": "0.20.0", "cuda": "12.4", "cudnn": 90100,
    "fbl": "0.1.0", "git_commit": "0123456789abcdef", "git_dirty": True,
    "precision": "bf16", "channels_last": True, "compile": "compiled",
}  # fmt: skip


def _test_predictions(key: str) -> Predictions:
    labels = np.repeat(np.arange(NUM_CLASSES), IMAGES_PER_CLASS)
    right = np.arange(len(labels)) % 10 < RIGHT_OF_TEN[key]
    predictions = np.where(right, labels, (labels + 1) % NUM_CLASSES)
    return Predictions(np.arange(len(labels)), labels, predictions, NUM_CLASSES)


def _add_new_fields(folder, key):
    """What training now writes beside the older fields: predictions, long-tail summaries, corrected
    test-prior accuracies, and provenance."""
    save_predictions(folder, "test", _test_predictions(key))
    summary = json.loads((folder / "summary.json").read_text())
    summary["last"].update({"worst": 30.0, "hmean": 50.0, "gmean": 55.0, "macro_f1": 60.0 + RIGHT_OF_TEN[key]})
    summary["last"]["test_priors"] = {"uniform": {"uncorrected": 0.0, "corrected": 70.0}}
    summary["provenance"] = PROVENANCE
    (folder / "summary.json").write_text(json.dumps(summary))


def _report(tmp_path, new_fields=True):
    folders = write_two_methods(tmp_path / "runs", new_fields=new_fields)
    if new_fields:
        for folder in folders:
            _add_new_fields(folder, folder.parent.name)
    write_report([tmp_path / "runs"], tmp_path / "report")
    return (tmp_path / "report" / "report.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def markdown(tmp_path_factory):
    return _report(tmp_path_factory.mktemp("evidence"))


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _forward_50(seed: int) -> float:
    weights = [50 ** (-c / (NUM_CLASSES - 1)) for c in range(NUM_CLASSES)]  # CLASS_COUNTS is sorted
    return sum(w * a for w, a in zip(weights, per_class_acc(seed), strict=True)) / sum(weights)


def test_test_prior_table_longhand(markdown):
    section = _section(markdown, "Accuracy under test class priors")
    assert "| Method | n | F50 | F25 | F10 | F5 | F2 | U | B2 | B5 | B10 | B25 | B50 |" in section
    forward = [_forward_50(s) for s in (1, 2, 3)]
    uniform = [statistics.mean(per_class_acc(s)) for s in (1, 2, 3)]  # 63 + seed
    cell = f"{statistics.mean(forward):.2f} ± {statistics.stdev(forward):.2f}"
    assert f"| ce | 3 | {cell} |" in section
    assert f"| {statistics.mean(uniform):.2f} ± {statistics.stdev(uniform):.2f} |" in section
    assert CLASS_COUNTS == sorted(CLASS_COUNTS, reverse=True)


def test_corrected_prior_table_reads_what_evaluation_recorded(markdown):
    section = _section(markdown, "Accuracy under test class priors, prior-corrected")
    assert "| ce | 3 | – | – | – | – | – | 70.00 ± 0.00 | – |" in section


def test_long_tail_table(markdown):
    section = _section(markdown, "Long-tail summaries (last epoch)")
    assert "| Method | n | Worst class | H-mean | G-mean | Macro-F1 |" in section
    assert "| fbl λ=60 | 3 | 30.00 ± 0.00 | 50.00 ± 0.00 | 55.00 ± 0.00 | 68.00 ± 0.00 |" in section


def test_per_run_intervals_from_the_predictions(markdown):
    section = _section(markdown, "Per-run 95% intervals over the test images")
    rows = [line for line in section.splitlines() if line.startswith("| ce |")]
    assert len(rows) == 3
    low, high = (float(x) for x in rows[0].split("|")[3].split("[")[1].rstrip("] ").split(","))
    half = 100 * 1.96 * math.sqrt(0.7 * 0.3 / 200)  # 200 test images, 70% right
    assert abs(low - (70 - half)) < 1.5 and abs(high - (70 + half)) < 1.5


def test_paired_differences_against_ce(markdown):
    section = _section(markdown, "Paired differences against ce")
    row = next(line for line in section.splitlines() if line.startswith("| fbl λ=60 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["fbl λ=60", "ce", "1, 2, 3"]
    # fbl gets 20 more of the 200 images right in every seed, and none fewer: +10 points, real
    assert cells[3].startswith("+10.00 ± 0.00 [+") and cells[3].endswith("] *")
    assert cells[-1] == ", ".join([f"{2 / 2**20:.2g}"] * 3)


def test_provenance_table(markdown):
    section = _section(markdown, "How each run ran")
    row = next(line for line in section.splitlines() if "seed1" in line and "/ce/" in line)
    assert "| 2026-01-02T03:04:05 | 1:01:01 | 1 | 2 | cuda:0 (NVIDIA H200) |" in row
    assert "Intel(R) Xeon(R) Platinum 8480+ (AMX-BF16, AVX512-BF16) | 8 |" in row
    assert "Python 3.11.7, torch 2.5.0, torchvision 0.20.0, CUDA 12.4 |" in row
    assert "fbl 0.1.0 @ 0123456789 + local changes | bf16, channels-last, compiled |" in row


def _part(started, seconds, threads, commit, epochs):
    return {"started_at": started, "seconds": seconds, "threads": threads, "git_commit": commit, "git_dirty": False,
            "epochs": epochs}  # fmt: skip


def _provenance_row(provenance, resumes=()):
    run = Run(path=Path("r"), config={}, summary={"provenance": provenance}, resumes=list(resumes))
    (row,) = provenance_rows([run])
    return dict(zip(PROVENANCE_COLUMNS, row, strict=True))


def test_a_run_resumed_in_parts_shows_its_first_start_summed_duration_and_every_commit_and_thread_count():
    parts = [_part("2026-01-01T10:00:00+00:00", 3600.0, 2, "a" * 40, [0, 150]),
             _part("2026-01-02T09:00:00+00:00", 1200.5, 1, "b" * 40, [150, 200])]  # fmt: skip
    row = _provenance_row({**PROVENANCE, "parts": parts})
    assert (row["Started (UTC)"], row["Duration"], row["Parts"]) == ("2026-01-01T10:00:00", "1:20:00", "2")
    assert row["Threads"] == "2, 1" and row["Code"] == "fbl 0.1.0 @ aaaaaaaaaa, bbbbbbbbbb"


def test_parts_an_older_fbl_did_not_record_make_the_start_unknown_and_the_duration_a_lower_bound():
    parts = [{"epochs": [0, 7], "recorded": False}, _part("2026-01-02T09:00:00+00:00", 61.0, 1, "b" * 40, [7, 9])]
    row = _provenance_row({**PROVENANCE, "parts": parts})
    assert (row["Started (UTC)"], row["Duration"], row["Parts"]) == ("– (7 epochs unrecorded)", "≥ 0:01:01", "2")
    assert row["Threads"] == "1" and row["Code"] == "fbl 0.1.0 @ bbbbbbbbbb"


def test_a_run_whose_parts_ran_on_other_devices_or_precisions_names_each_stretch_with_its_epochs():
    where = [("cpu", "Intel(R) Xeon(R) Processor", "bf16"), ("cpu", "AMD EPYC", "fp32"),
             ("cuda", "NVIDIA H200", "bf16"), ("cuda", "NVIDIA H200", "bf16"), ("cpu", "AMD EPYC", "fp32")]  # fmt: skip
    epochs = [[0, 148], [148, 150], [150, 170], [170, 200], [200, 200]]
    parts = [
        {**_part("2026-01-01T10:00:00+00:00", 60.0, 1, "a" * 40, span), "device": device, "device_name": name,
         "precision": precision}
        for (device, name, precision), span in zip(where, epochs, strict=True)
    ]  # fmt: skip
    row = _provenance_row({**PROVENANCE, "parts": parts})
    assert row["Device"] == (
        "cpu (Intel(R) Xeon(R) Processor), bf16: epochs 1–148; cpu (AMD EPYC), fp32: epochs 149–150; "
        "cuda (NVIDIA H200), bf16: epochs 151–200; cpu (AMD EPYC), fp32: summary only"
    )
    same = [{**part, "device": "cuda:0", "device_name": "NVIDIA H200", "precision": "bf16"} for part in parts]
    assert _provenance_row({**PROVENANCE, "parts": same})["Device"] == "cuda:0 (NVIDIA H200)"


def test_a_resumed_run_from_before_parts_says_its_times_are_the_last_parts():
    row = _provenance_row(PROVENANCE, resumes=[{"start_epoch": 7}, {"start_epoch": 193}])
    assert (row["Started (UTC)"], row["Duration"], row["Parts"]) == (
        "2026-01-02T03:04:05 (last part)", "1:01:01 (last part)", "3"
    )  # fmt: skip


def test_older_runs_show_none_of_the_new_tables_but_the_derivable_prior_table(tmp_path):
    markdown = _report(tmp_path, new_fields=False)
    for title in ("Long-tail summaries", "prior-corrected", "Per-run 95%", "Paired differences", "How each run ran"):
        assert title not in markdown
    assert "## Accuracy under test class priors\n" in markdown


def test_test_time_aggregation_tables_for_the_test_set_and_the_lossless_estimate(tmp_path):
    folders = write_two_methods(tmp_path / "runs")
    for folder in folders:
        for split, base in (("test", 60.0), ("lossless_estimate", 70.0)):
            seed = int(folder.name.removeprefix("seed"))
            table = {p.name: {"images": 100, "weights": [0.5, 0.5], "aggregated": base + seed, "averaged": base}
                     for p in SADE_PRIORS}  # fmt: skip
            save_aggregation(folder, split, table)
    write_report([tmp_path / "runs"], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    on_test = _section(markdown, "Test-time aggregation (SADE's test-agnostic protocol)")
    on_estimate = _section(markdown, "Test-time aggregation (SADE's test-agnostic protocol) on the lossless estimate")
    assert "| ce | aggregated | 3 | 62.00 ± 1.00 |" in on_test  # seeds 1, 2, 3: 61, 62, 63
    assert "| ce | aggregated | 3 | 72.00 ± 1.00 |" in on_estimate
    assert "--split lossless_estimate --test-time-aggregation" in on_estimate
