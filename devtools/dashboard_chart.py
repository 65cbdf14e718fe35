"""The Grafana dashboard's panels drawn with matplotlib from Prometheus range queries: the README's
picture of the dashboard where Grafana itself cannot run (it is not in Debian)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from devtools.prometheus import Prometheus
from shared.settings import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "monitoring" / "grafana" / "dashboards" / "torchweave.json"


def panels(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """The dashboard's panels, in order."""
    loaded: list[dict[str, Any]] = json.loads(path.read_text())["panels"]
    return loaded


def as_promql(expr: str, rate_window: str) -> str:
    """A panel's query with Grafana's variables filled in: every model, a fixed rate window."""
    return expr.replace("$__rate_interval", rate_window).replace('"$model"', '".*"')


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def render(prom: Prometheus, out: Path, minutes: float, rate_window: str = "30s") -> None:
    """Draw every panel over the last `minutes` into one PNG."""
    end = time.time()
    start, step = end - minutes * 60, max(1.0, minutes * 60 / 300)
    shown = panels()
    fig, axes = plt.subplots((len(shown) + 1) // 2, 2, figsize=(15, 3.2 * ((len(shown) + 1) // 2)))
    for ax, panel in zip(axes.flat, shown, strict=False):
        for target in panel["targets"]:
            for series in prom.query_range(as_promql(target["expr"], rate_window), start, end, step):
                xs = [(float(t) - end) / 60 for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=legend(target["legendFormat"], series["metric"]) or target["refId"])
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel("minutes ago", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("TorchWeave dashboard panels, drawn from Prometheus (monitoring/grafana/dashboards)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
