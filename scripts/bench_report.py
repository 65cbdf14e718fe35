"""What `scripts/bench.py` makes of its runs: the summary per system, ratios, the chart and the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.bench_systems import Run


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(run: Run) -> dict[str, Any]:
    ttft = [r.token_times[0] - r.arrival for r in run.requests if r.token_times]
    later = ttft[1:]  # requests after the first: in the shared-prefix workload, the ones that can hit
    itl = [b - a for r in run.requests for a, b in zip(r.token_times, r.token_times[1:], strict=False)]
    tokens = sum(r.num_tokens for r in run.requests)
    return {
        "system": run.system,
        "requests": len(run.requests),
        "output_tokens": tokens,
        "wall_s": round(run.wall_s, 3),
        "tokens_per_s": round(tokens / run.wall_s, 2),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "ttft_p50_after_first_s": percentile(later, 50),
        "itl_p50_s": percentile(itl, 50),
        "itl_p99_s": percentile(itl, 99),
        **run.extra,
    }


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b:
        return None
    return round(a["tokens_per_s"] / b["tokens_per_s"], 2)


def write_chart(results: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["system"] for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    axes[0].bar(names, [r["tokens_per_s"] for r in results], color="#3b6ea5")
    axes[0].set_title("output tokens/s (higher is better)")
    for ax, key, label in (
        (axes[1], "ttft", "time to first token (s)"),
        (axes[2], "itl", "inter-token latency (s)"),
    ):
        p50 = [r[f"{key}_p50_s"] or 0 for r in results]
        p99 = [r[f"{key}_p99_s"] or 0 for r in results]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color="#3b6ea5")
        ax.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99", color="#e0a030")
        ax.set_xticks(list(xs), names)
        ax.set_title(label)
        ax.legend()
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(report: dict[str, Any]) -> None:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f}"

    print(
        f"\n{'system':<20}{'reqs':>6}{'tok/s':>10}{'ttft p50':>10}{'ttft p99':>10}"
        f"{'itl p50':>9}{'itl p99':>9}  (ms)"
    )
    for r in report["results"]:
        print(
            f"{r['system']:<20}{r['requests']:>6}{r['tokens_per_s']:>10.1f}{ms(r['ttft_p50_s']):>10}"
            f"{ms(r['ttft_p99_s']):>10}{ms(r['itl_p50_s']):>9}{ms(r['itl_p99_s']):>9}"
        )
    for name, value in report["ratios"].items():
        if value is not None:
            print(f"{name:<28}{value:>6.2f} x")
    bound = report["ttft_bound"]
    if bound["prefill_plus_two_steps_s"] is not None:
        bound_s = bound["prefill_plus_two_steps_s"]
        print(f"ttft bound (one prompt's prefill + two full decode steps): {bound_s:.3f} s")
