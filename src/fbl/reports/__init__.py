"""Reports from finished run folders (``config.yaml``, ``metrics.jsonl``, ``summary.json``): tables
over seeds and figures, written as ``report.md`` and a self-contained ``report.html``."""

from fbl.reports.aggregate import highest_mean, method_row, method_table, sweep_tables
from fbl.reports.methods import Method, group_methods
from fbl.reports.report import report_folder, write_report
from fbl.reports.run_folder import Run, find_run_dirs, load_run, load_runs
from fbl.reports.significance import paired_difference, paired_rows, run_intervals

__all__ = [
    "Method",
    "Run",
    "find_run_dirs",
    "group_methods",
    "highest_mean",
    "load_run",
    "load_runs",
    "method_row",
    "method_table",
    "paired_difference",
    "paired_rows",
    "report_folder",
    "run_intervals",
    "sweep_tables",
    "write_report",
]
