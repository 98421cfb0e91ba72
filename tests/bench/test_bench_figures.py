"""The benchmark's arithmetic and report on fixed inputs: known answers, no stack."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from bench.__main__ import parse
from bench.report import KEYS, TARGETS, summary_line, table, verdict
from bench.run import PHASES, derive
from bench.stats import median, per_unit_ms, percentile, ratio

ROOT = Path(__file__).resolve().parents[2]
MACHINE = {"cpu": "test cpu", "cores": 2, "load_before": (0.5, 0.25, 0.0), "commit": "abc"}


def test_percentile_is_the_nearest_rank_of_the_sorted_values() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose

    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 0) == 1
    assert percentile([7.0], 99) == 7


def test_percentile_of_no_values_is_nan_not_an_error() -> None:
    assert math.isnan(percentile([], 50))


def test_median_is_the_middle_value_or_the_mean_of_the_middle_two() -> None:
    assert median([3.0, 1.0, 2.0]) == 2
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert math.isnan(median([]))


def test_ratio_is_nan_when_a_side_is_missing_zero_or_nan() -> None:
    assert ratio(3, 4) == 0.75
    assert math.isnan(ratio(1, 0))
    assert math.isnan(ratio(None, 4))
    assert math.isnan(ratio(3, None))
    assert math.isnan(ratio(3, math.nan))


def test_derive_computes_the_ratios_the_targets_are_set_on() -> None:
    figures: dict[str, object] = {
        "pgbench_tps": 1000.0,
        "transfer_tps": 400.0,
        "transfer_hot_tps": 360.0,
        "deposit": {"wrk_cores": 0.1},
        "transfer": {"submit": {"wrk_cores": 0.25}},
    }

    derive(figures)

    assert figures["transfer_ratio"] == pytest.approx(0.4)
    assert figures["hot_ratio"] == pytest.approx(0.9)
    assert math.isnan(figures["read_ratio"])  # type: ignore[arg-type]
    assert figures["wrk_cores_max"] == 0.25


def test_per_unit_ms_is_milliseconds_of_cpu_per_unit_and_nan_for_none_counted() -> None:
    assert per_unit_ms(1.5, 3000) == pytest.approx(0.5)
    assert math.isnan(per_unit_ms(1.5, 0))
    assert math.isnan(per_unit_ms(None, 10))


def test_derive_computes_the_batch_cpu_and_database_figures() -> None:
    figures: dict[str, object] = {
        "machine": {**MACHINE, "cores": 2},
        "pgbench_tps": 5000.0,
        "pgbench": {"postgres_cpu_ms_per_transfer": 0.25},
        "batch_tps": 6000.0,
        "atomic_batch_tps": 4000.0,
        "batch": {"postgres_cpu_ms_per_transfer": 0.1},
        "transfer_p99_ms": 120.0,
        "transfer": {"api_cpu_ms_per_request": 0.9, "postgres_cpu_ms_per_transfer": 0.2},
        "read_typename": {"api_cpu_ms_per_request": 0.3},
        "page_ratio": 0.2,
    }

    derive(figures)

    assert figures["batch_ratio"] == pytest.approx(1.2)
    assert figures["atomic_batch_ratio"] == pytest.approx(0.8)
    assert figures["mutation_overhead"] == pytest.approx(3.0)
    assert figures["completion_p99_ms"] == 120.0
    assert figures["page_ratio"] == 0.2
    assert figures["db_cost_ratio"] == pytest.approx(0.4)
    assert figures["db_cost_ratio_single"] == pytest.approx(0.8)
    # 2 cores = 2,000 ms of CPU a second, over the milliseconds one transfer costs.
    assert figures["db_capacity_tps"] == pytest.approx(20_000)
    assert figures["db_capacity_single_tps"] == pytest.approx(10_000)
    assert figures["db_capacity_pgbench_tps"] == pytest.approx(8_000)


def test_derive_leaves_ratios_of_phases_that_did_not_run_as_nan() -> None:
    figures: dict[str, object] = {"read_ratio": 0.7}

    derive(figures)

    assert math.isnan(figures["transfer_ratio"])  # type: ignore[arg-type]
    assert math.isnan(figures["hot_ratio"])  # type: ignore[arg-type]
    assert figures["read_ratio"] == 0.7
    for key in (
        "batch_ratio",
        "atomic_batch_ratio",
        "mutation_overhead",
        "completion_p99_ms",
        "page_ratio",
        "db_cost_ratio",
        "db_cost_ratio_single",
        "db_capacity_tps",
        "db_capacity_single_tps",
    ):
        assert math.isnan(figures[key]), key  # type: ignore[arg-type]
    assert "wrk_cores_max" not in figures


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("transfer_ratio", 0.3, "target >= 0.3: met"),
        ("transfer_ratio", 0.29, "target >= 0.3: NOT met"),
        ("deposit_p99_ms", 25.0, "target <= 25: met"),
        ("deposit_p99_ms", 25.1, "target <= 25: NOT met"),
        ("completion_p99_ms", 99.9, "target < 100: met"),
        ("completion_p99_ms", 100.0, "target < 100: NOT met"),
        ("deposit_rps", 1.0, ""),
        ("read_ratio", math.nan, ""),
    ],
)
def test_a_figure_with_a_target_is_reported_met_or_not_met(
    key: str, value: float, expected: str
) -> None:
    assert verdict(key, value).strip() == expected


def test_the_table_lists_every_key_figure_with_its_verdict_and_every_problem() -> None:
    figures = {
        "machine": MACHINE,
        "problems": ["deposits: 3 answered but 2 recorded"],
        "transfer_ratio": 0.25,
        "read_ratio": math.nan,
        "deposit_rps": 2501.4,
    }
    rows = [
        {
            "phase": "deposits (32 conn)",
            "rate": "2,501 rps",
            "p50": "12.0",
            "p99": "24.0",
            "checked": "5 ok, 0 bad",
            "cpu": {"others": 0.5, "api": 1.25},
        }
    ]

    lines = table(figures, rows).splitlines()

    for key in KEYS:
        assert any(line.startswith(key + " ") for line in lines), key
    assert any(re.match(r"transfer_ratio +0\.25 +target >= 0\.3: NOT met", x) for x in lines)
    assert any(re.match(r"read_ratio +nan$", line) for line in lines)
    assert any(re.match(r"deposit_rps +2,501$", line) for line in lines)
    # The CPU columns come in a fixed order, whatever the order of the measurement.
    assert any(line.endswith("api 1.25 others 0.50") for line in lines)
    assert "PROBLEM: deposits: 3 answered but 2 recorded" in lines


def test_the_summary_line_is_json_with_nan_as_null_and_the_problems_counted() -> None:
    figures = {
        "machine": MACHINE,
        "problems": ["one", "two"],
        "deposit_rps": 2501.123456789,
        "read_ratio": math.nan,
        "ledger_consistent": True,
    }

    line = json.loads(summary_line(figures))

    assert line["deposit_rps"] == 2501.12
    assert line["read_ratio"] is None
    assert line["pgbench_tps"] is None  # a phase that did not run
    assert line["ledger_consistent"] is True
    assert line["problems"] == 2
    assert line["machine"] == "test cpu x2"


def test_the_readme_states_the_targets_the_bench_checks() -> None:
    speed = (ROOT / "README.md").read_text().split("## Speed", 1)[1].split("\n## ", 1)[0]
    # The target is each figures table's last column; a target may be stated in two tables.
    stated = {
        (op, float(bound))
        for row in speed.splitlines()
        if row.startswith("| ") and row.count("|") >= 4
        for op, bound in re.findall(r"(>=|<=|<) ([\d.]+)", row.split("|")[-2])
    }

    assert stated == set(TARGETS.values())


def test_the_options_parse_to_the_phases_and_the_quick_limits() -> None:
    assert parse([]).only == list(PHASES)
    assert {"batches", "pages"} <= set(PHASES)
    quick = parse(["--quick", "--only", "reads, deposits"])
    assert quick.only == ["reads", "deposits"]
    assert quick.duration == 3
    assert quick.transfers == 600
    assert quick.drain_timeout == 20.0
    with pytest.raises(SystemExit):
        parse(["--only", "reads,nonsense"])


def test_a_run_without_transfers_still_draws_its_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="pip install -e '.[bench]'")
    from bench import chart

    http = {"wallet { balance }": [(50.0, 2.0), (99.0, 9.0)]}

    drawn = chart.draw(tmp_path / "latency.png", http, {}, "reads only")

    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_cpu_meter_stopped_twice_answers_the_figures_of_its_first_stop() -> None:
    from bench.cpu import CpuMeter, Groups

    meter = CpuMeter(Groups(), interval=0.01).start()
    first = meter.stop()
    seconds = dict(meter.seconds)

    assert meter.stop() == first
    assert meter.seconds == seconds
