import json

from fbl.reports.methods import group_methods, method_config
from fbl.reports.run_folder import load_run, load_runs

from ._fake_runs import HEADLINE, write_run, write_two_methods


def test_runs_equal_but_for_seed_and_bookkeeping_form_one_method(tmp_path):
    write_two_methods(tmp_path)
    methods = group_methods(load_runs([tmp_path]))
    assert [m.label for m in methods] == ["ce", "fbl λ=60"]
    assert [sorted(m.seeds) for m in methods] == [[1, 2, 3], [1, 2, 3]]
    # out, workers and seed differ between the runs but name no different method
    assert "out" not in methods[0].config and "seed" not in methods[0].config


def test_each_grid_point_is_its_own_method_sorted_numerically(tmp_path):
    runs = [
        load_run(write_run(tmp_path / f"fbl{lam}", "fbl", 1, HEADLINE[("fbl60", 1)], lambda_=lam))
        for lam in (120.0, 30.0, 60.0)
    ]
    assert [m.label for m in group_methods(runs)] == ["fbl λ=30", "fbl λ=60", "fbl λ=120"]


def test_labels_that_would_clash_name_the_differing_setting(tmp_path):
    runs = [
        load_run(write_run(tmp_path / f"wd{i}", "ce", 1, HEADLINE[("ce", 1)], weight_decay=wd))
        for i, wd in enumerate((2e-4, 5e-4))
    ]
    assert sorted(m.label for m in group_methods(runs)) == ["ce weight_decay=0.0002", "ce weight_decay=0.0005"]


def test_a_clash_names_only_what_differs_not_an_int_against_its_float_or_overwrite(tmp_path):
    settings = [
        {"lambda_": 60, "weight_decay": 2e-4, "overwrite": True},
        {"lambda_": 60.0, "weight_decay": 5e-4, "overwrite": False},
    ]
    folders = [write_run(tmp_path / f"r{i}", "ce", 1, HEADLINE[("ce", 1)], **extra) for i, extra in enumerate(settings)]
    runs = [load_run(folder) for folder in folders]
    assert sorted(m.label for m in group_methods(runs)) == ["ce weight_decay=0.0002", "ce weight_decay=0.0005"]


def test_train_rule_and_stage2_enter_the_label_and_stage1_path_does_not_split(tmp_path):
    runs = [
        load_run(
            write_run(
                tmp_path / f"crt{s}",
                "ce",
                s,
                HEADLINE[("ce", s)],
                train_rule="balanced-rs",
                stage2_from=f"runs/stage1-seed{s}",
            )
        )
        for s in (1, 2)
    ]
    (method,) = group_methods(runs)
    assert method.label == "ce + balanced-rs (cRT)"
    assert method_config(runs[0])["stage2_from"] is True


def test_each_kind_of_stage2_names_itself_in_the_label(tmp_path):
    kinds = {"lws": "ce + balanced-rs (LWS)", "router": "ride-router + balanced-rs (stage 2)"}
    runs = [
        load_run(
            write_run(
                tmp_path / kind,
                "ride-router" if kind == "router" else "ce",
                1,
                HEADLINE[("ce", 1)],
                train_rule="balanced-rs",
                stage2_from="runs/stage1",
                decoupled=kind,
            )
        )
        for kind in kinds
    ]
    assert sorted(m.label for m in group_methods(runs)) == sorted(kinds.values())


def test_an_option_added_after_a_run_takes_its_default_and_60_is_60_0(tmp_path):
    # Seed 1 was written before `nesterov` existed (no key: it trained without), seed 2 says False; seed 3
    # has lambda_ 60 where the others have 60.0. One method; Nesterov runs are another.
    old = write_run(tmp_path / "old", "fbl", 1, HEADLINE[("fbl60", 1)])
    new = write_run(tmp_path / "new", "fbl", 2, HEADLINE[("fbl60", 2)], nesterov=False)
    int_lambda = write_run(tmp_path / "int", "fbl", 3, HEADLINE[("fbl60", 3)], nesterov=False, lambda_=60)
    nesterov = write_run(tmp_path / "nesterov", "fbl", 1, HEADLINE[("fbl60", 1)], nesterov=True)
    methods = group_methods([load_run(folder) for folder in (old, new, int_lambda, nesterov)])
    assert sorted((m.label, tuple(sorted(m.seeds))) for m in methods) == [
        ("fbl λ=60 nesterov=False", (1, 2, 3)),
        ("fbl λ=60 nesterov=True", (1,)),
    ]
    assert method_config(load_run(old))["nesterov"] is False


def test_lambda_names_only_the_losses_that_take_it(tmp_path):
    # fbl-experts logs a curriculum alpha too, but its strengths are expert_lambdas, not lambda_
    write_run(tmp_path / "experts", "fbl-experts", 1, HEADLINE[("fbl60", 1)], lambda_=30.0)
    write_run(tmp_path / "cb", "cb-fbl", 1, HEADLINE[("fbl60", 1)], lambda_=30.0)
    write_run(tmp_path / "ce", "ce", 1, HEADLINE[("ce", 1)], lambda_=30.0)
    records = [json.loads(line) for line in (tmp_path / "experts" / "metrics.jsonl").read_text().splitlines()]
    (tmp_path / "experts" / "metrics.jsonl").write_text(
        "".join(json.dumps({**r, "alpha": 0.5}) + "\n" for r in records)
    )
    labels = sorted(m.label for m in group_methods(load_runs([tmp_path])))
    assert labels == ["cb-fbl λ=30", "ce", "fbl-experts"]
    # a loss this fbl does not know (an older run) keeps the old rule: λ where alpha was logged
    write_run(tmp_path / "old", "some-old-loss", 1, HEADLINE[("ce", 1)], lambda_=30.0)
    assert "some-old-loss" in [m.label for m in group_methods(load_runs([tmp_path / "old"]))]
