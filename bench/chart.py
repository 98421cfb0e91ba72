"""The latency distributions of one run, as a PNG (matplotlib, from the `bench` extra)."""

from __future__ import annotations

import math
from pathlib import Path


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(
    path: Path,
    http: dict[str, list[tuple[float, float]]],
    settled: dict[str, list[float]],
    title: str,
) -> Path:
    """Left: each HTTP phase's response time by percentile (from wrk). Right: transfers from
    request to COMPLETED (from PostgreSQL's timestamps), every transfer counted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter

    # Percentiles on a "nines" axis, so the tail gets as much room as the median.
    def nines(p: float) -> float:
        return -math.log10(max(1e-6, 1 - min(p, 99.9999) / 100))

    ticks = [0, 50, 90, 99, 99.9, 99.99]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for name, points in http.items():
        left.plot([nines(p) for p, _ in points], [ms for _, ms in points], label=name)
    for name, values in settled.items():
        ordered = sorted(values)
        count = len(ordered)
        if count:
            right.plot(
                [nines(100 * (i + 1) / (count + 1)) for i in range(count)],
                ordered,
                label=f"{name} ({count:,})",
            )
    for axis, heading in (
        (left, "HTTP response time (wrk)"),
        (right, "Transfer: request to COMPLETED (PostgreSQL timestamps)"),
    ):
        axis.set_title(heading)
        axis.set_yscale("log")
        axis.set_ylabel("milliseconds")
        axis.set_xlabel("percentile (the tail stretched: 1/(1-p), log scale)")
        axis.xaxis.set_major_locator(FixedLocator([nines(t) for t in ticks]))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda _, i: f"{ticks[i]:g}"))
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:  # a phase left out draws nothing to name
            axis.legend()
    figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
