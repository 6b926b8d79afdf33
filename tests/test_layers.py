"""Dependencies run one way: a module never imports from a higher layer, not even inside a function."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fbl"

# Lowest first. A module may import from its own layer or any lower one.
LAYERS = [
    {"errors", "registry", "checks", "seeding", "atomic_files", "manifest", "classifiers", "lr_schedule"},
    {
        "class_weights",
        "samplers",
        "mixup",
        "metrics",
        "posthoc",
        "train_rules",
        "data",
        "losses",
        "models",
        "label_shift",
        "predictions",
        "statistics",
        "balanced_estimate",
        "aggregation_record",
    },  # fmt: skip
    {"config"},
    {"engine"},
    {"reports"},
    {"compare", "demo"},
    {"cli", "__main__", "__init__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"fbl.{module} belongs to no layer; add it to LAYERS")


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fbl."):
            yield node.module[len("fbl.") :]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fbl."):
                    yield alias.name[len("fbl.") :]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_a_higher_layer(path):
    module = ".".join(path.relative_to(SRC).with_suffix("").parts)
    own = layer_of(module)
    higher = [name for name in imported_modules(path) if layer_of(name) > own]
    assert not higher, f"fbl.{module} (layer {own}) imports higher layers: {higher}"
