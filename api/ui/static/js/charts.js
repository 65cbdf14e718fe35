// Line charts on uPlot (vendor/uPlot-1.6.32, loaded as a classic script before the modules) for the monitor's
// live series and the timeline's tokens. A chart keeps its own copy of the data so that it can be rebuilt
// when a series appears (a new worker, a new model) or the theme changes; uPlot draws on a canvas, so the
// theme's colours are read from the CSS variables at each build. Its box tells how many points it holds
// (data-points) and the largest value shown (data-peak), for tests and for anyone inspecting the page.

import { clock } from "./format.js";

const PALETTE = ["--series-1", "--series-2", "--series-3", "--series-4", "--series-5", "--series-6"];
const PLOT_HEIGHT = 170; // the box reserves room for this plus a row of legend (views.css)
// Live charts span seconds to minutes: whole-second ticks, labelled with the local clock time.
const CLOCK_AXIS = {
  space: 70,
  incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600],
  values: (_u, splits) => splits.map(clock),
};

export class LineChart {
  /** `time`: x holds Unix seconds (a clock axis); `keep`: how many points a live chart remembers. */
  constructor(box, { time = true, keep = 120 } = {}) {
    this.box = box;
    this.time = time;
    this.keep = keep;
    this.xs = [];
    this.series = new Map(); // name → values aligned with xs (null: a gap)
    this.plot = null;
    this.width = 0;
    this.rebuild = this.rebuild.bind(this);
    window.addEventListener("tw:theme", this.rebuild);
    this.observer = new ResizeObserver(() => this.fit());
    this.observer.observe(box);
  }

  /** One point per series at x; a series absent from `values` gets a gap, a new name a new series. */
  push(x, values) {
    let isNew = false;
    for (const name of Object.keys(values)) {
      if (!this.series.has(name)) {
        this.series.set(name, this.xs.map(() => null));
        isNew = true;
      }
    }
    this.xs.push(x);
    for (const [name, ys] of this.series) ys.push(values[name] ?? null);
    if (this.xs.length > this.keep) {
      this.xs.shift();
      for (const ys of this.series.values()) ys.shift();
    }
    this.draw(isNew);
  }

  /** Replace all data: xs, and {name: ys} with ys aligned to xs. */
  set(xs, named) {
    const isNew = Object.keys(named).join() !== [...this.series.keys()].join();
    this.xs = xs;
    this.series = new Map(Object.entries(named));
    this.draw(isNew);
  }

  draw(isNew) {
    if (isNew || !this.plot) this.rebuild();
    else this.plot.setData(this.data());
    const values = [...this.series.values()].flat().filter((v) => v !== null);
    this.box.dataset.points = String(this.xs.length);
    this.box.dataset.peak = String(values.length ? Math.max(...values) : 0);
  }

  data() {
    return [this.xs, ...this.series.values()];
  }

  rebuild() {
    this.plot?.destroy();
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();
    const axis = { stroke: color("--muted"), grid: { stroke: color("--grid") }, ticks: { stroke: color("--grid") } };
    const options = {
      width: this.currentWidth(),
      height: PLOT_HEIGHT,
      scales: {
        x: { time: this.time },
        // Counts and rates read best from zero; an all-zero series still gets a visible range.
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [this.time ? { ...axis, ...CLOCK_AXIS } : axis, { ...axis, size: 56 }],
      legend: { live: false }, // names only: values under a moving cursor would reflow the legend
      series: [
        { label: this.time ? "time" : "s" },
        ...[...this.series.keys()].map((name, i) => ({
          label: name,
          stroke: color(PALETTE[i % PALETTE.length]),
          width: 2,
          points: { show: false },
        })),
      ],
    };
    this.plot = new globalThis.uPlot(options, this.data(), this.box);
  }

  currentWidth() {
    this.width = Math.max(200, Math.floor(this.box.clientWidth) - 8);
    return this.width;
  }

  fit() {
    if (!this.plot || this.box.clientWidth === 0) return; // hidden: fit when shown again
    if (Math.max(200, Math.floor(this.box.clientWidth) - 8) !== this.width) {
      this.plot.setSize({ width: this.currentWidth(), height: PLOT_HEIGHT });
    }
  }

  destroy() {
    window.removeEventListener("tw:theme", this.rebuild);
    this.observer.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}
