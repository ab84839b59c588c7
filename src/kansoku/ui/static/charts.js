// A small in-house SVG chart module: time series (line, area, stacked bars), a histogram and
// horizontal bars. Colours come from CSS classes (.c0 … .c7), tooltips are <title> text.

import { h, s } from './dom.js';
import { int, tick } from './format.js';

const W = 640;
const H = 200;
const PAD = { top: 10, right: 12, bottom: 24, left: 56 };
const IW = W - PAD.left - PAD.right;
const IH = H - PAD.top - PAD.bottom;

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function frame(label, yMax, yFormat, xLabels) {
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  for (let i = 0; i <= 4; i++) {
    const y = PAD.top + IH - (IH * i) / 4;
    svg.appendChild(s('line', { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: 'grid' }));
    svg.appendChild(s('text', { x: PAD.left - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, yFormat((yMax * i) / 4)));
  }
  for (const [x, text, anchor] of xLabels) {
    svg.appendChild(s('text', { x, y: H - 6, class: 'axis', 'text-anchor': anchor || 'middle' }, text));
  }
  return svg;
}

function legend(series) {
  if (series.length < 2) return null;
  return h('ul', { class: 'legend' },
    series.map((sr, i) => h('li', null, h('span', { class: `swatch c${sr.color ?? i}`, 'aria-hidden': 'true' }), sr.name)));
}

function xLabelsFor(times, widthS, xOf) {
  const n = times.length;
  if (!n) return [];
  const picks = n <= 1 ? [0] : [0, Math.floor((n - 1) / 2), n - 1];
  return [...new Set(picks)].map((i, k, all) => [xOf(i), tick(times[i], widthS), all.length > 1 && k === 0 ? 'start' : k === all.length - 1 && all.length > 1 ? 'end' : 'middle']);
}

/**
 * timeSeries({label, times: [ms], widthS, series: [{name, values, color?}], kind: 'line'|'area'|'stacked',
 *   yFormat}) → a <figure>. null values are gaps (lines) or nothing (bars).
 */
export function timeSeries({ label, times, widthS, series, kind = 'line', yFormat = String }) {
  const n = times.length;
  const stacked = kind === 'stacked';
  const totals = times.map((_, i) => series.reduce((a, sr) => a + (sr.values[i] || 0), 0));
  const rawMax = stacked ? Math.max(0, ...totals) : Math.max(0, ...series.flatMap((sr) => sr.values.filter((v) => v !== null)));
  const yMax = niceMax(rawMax);
  const step = IW / Math.max(n, 1);
  const xOf = (i) => (stacked ? PAD.left + step * (i + 0.5) : PAD.left + (n <= 1 ? IW / 2 : (IW * i) / (n - 1)));
  const yOf = (v) => PAD.top + IH - (IH * v) / yMax;
  const svg = frame(label, yMax, yFormat, xLabelsFor(times, widthS, xOf));
  if (stacked) {
    const bw = Math.max(1, step * 0.8);
    times.forEach((t, i) => {
      let base = 0;
      const g = s('g', null, s('title', null, `${tick(t, widthS)}: ${series.map((sr) => `${sr.name} ${yFormat(sr.values[i] || 0)}`).join(', ')}`));
      series.forEach((sr, k) => {
        const v = sr.values[i] || 0;
        if (v <= 0) return;
        const y0 = yOf(base);
        const y1 = yOf(base + v);
        g.appendChild(s('rect', { x: xOf(i) - bw / 2, y: y1, width: bw, height: Math.max(0.5, y0 - y1), class: `fill c${sr.color ?? k}` }));
        base += v;
      });
      svg.appendChild(g);
    });
  } else {
    series.forEach((sr, k) => {
      const cls = `c${sr.color ?? k}`;
      let run = [];
      const runs = [];
      sr.values.forEach((v, i) => {
        if (v === null || v === undefined) {
          if (run.length) runs.push(run);
          run = [];
        } else run.push([xOf(i), yOf(v), i]);
      });
      if (run.length) runs.push(run);
      for (const r of runs) {
        const d = r.map(([x, y], j) => `${j ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join('');
        if (kind === 'area') {
          const base = yOf(0).toFixed(1);
          svg.appendChild(s('path', { d: `${d}L${r[r.length - 1][0].toFixed(1)},${base}L${r[0][0].toFixed(1)},${base}Z`, class: `area ${cls}` }));
        }
        svg.appendChild(s('path', { d, class: `stroke ${cls}` }));
        for (const [x, y, i] of r) {
          svg.appendChild(s('circle', { cx: x, cy: y, r: r.length === 1 ? 3 : 2, class: `dot ${cls}` },
            s('title', null, `${tick(times[i], widthS)} ${sr.name}: ${yFormat(sr.values[i])}`)));
        }
      }
    });
  }
  return h('figure', { class: 'figure' }, svg, legend(series));
}

/**
 * histogram({label, bins: [{lo, hi, count}], xFormat}) → a <figure> of counts per value range.
 * The bins are the query API's: log-scaled, 10 per decade, only non-empty ones, a value of 0 in
 * a bin of its own (lo = hi = 0). Missing bins between the smallest and largest are drawn empty.
 */
export function histogram({ label, bins, xFormat = String }) {
  const zero = bins.find((b) => b.hi === 0);
  const byIndex = new Map(bins.filter((b) => b.hi > 0).map((b) => [Math.round(Math.log10(b.lo) * 10), b.count]));
  if (!zero && !byIndex.size) return null;
  const idx = [...byIndex.keys()];
  let bars = [];
  let note = 'Logarithmic value axis: each bar covers a range about 26 % wider than the one before.';
  if (idx.length) {
    const first = Math.min(...idx);
    const last = Math.max(...idx);
    // More than 40 bars would be slivers: merge neighbours (5, then 2.5 … bins per decade).
    const per = Math.max(1, Math.ceil((last - first + 1) / 40));
    if (per > 1) note = 'Logarithmic value axis: each bar covers a wider range than the one before.';
    for (let i = first; i <= last; i += per) {
      let count = 0;
      for (let k = i; k < i + per && k <= last; k++) count += byIndex.get(k) || 0;
      bars.push({ lo: 10 ** (i / 10), hi: 10 ** (Math.min(i + per, last + 1) / 10), count });
    }
  }
  if (zero) bars = [{ lo: 0, hi: 0, count: zero.count }, ...bars];
  const total = bars.reduce((a, b) => a + b.count, 0);
  const yMax = niceMax(Math.max(...bars.map((b) => b.count)));
  const step = IW / bars.length;
  const edge = (b) => (b.hi === 0 ? '0' : xFormat(b.lo));
  const xs = [[PAD.left, edge(bars[0]), 'start'], [W - PAD.right, xFormat(bars[bars.length - 1].hi), 'end']];
  if (bars.length > 4) xs.push([PAD.left + step * Math.floor(bars.length / 2), edge(bars[Math.floor(bars.length / 2)])]);
  const svg = frame(label, yMax, int, xs);
  bars.forEach((b, i) => {
    if (!b.count) return;
    const y = PAD.top + IH - (IH * b.count) / yMax;
    const range = b.hi === 0 ? '0' : `${xFormat(b.lo)}–${xFormat(b.hi)}`;
    const share = total ? ` (${((100 * b.count) / total).toFixed(1)} %)` : '';
    svg.appendChild(s('rect', { x: PAD.left + step * i + 1, y, width: Math.max(1, step - 2), height: PAD.top + IH - y, class: 'fill c0' },
      s('title', null, `${range}: ${b.count.toLocaleString('en-US')} call${b.count === 1 ? '' : 's'}${share}`)));
  });
  return h('figure', { class: 'figure' }, svg, h('p', { class: 'note' }, note));
}

/** hbars({rows: [{label, value, href?, note?}], format}) → horizontal bars (a list, readable as text). */
export function hbars({ label, rows, format = String }) {
  const max = Math.max(0, ...rows.map((r) => r.value || 0)) || 1;
  return h('ul', { class: 'hbars', 'aria-label': label },
    rows.map((r, i) => {
      const bar = h('span', { class: `bar fill-bg c${i % 8}`, 'aria-hidden': 'true' });
      bar.style.width = `${Math.max(0.5, (100 * (r.value || 0)) / max)}%`;
      const name = r.href ? h('a', { href: r.href }, r.label) : h('span', null, r.label);
      return h('li', null,
        h('span', { class: 'hb-label', title: r.label }, name),
        h('span', { class: 'hb-track' }, bar),
        h('span', { class: 'hb-value' }, format(r.value), r.note ? h('small', null, ` ${r.note}`) : null));
    }));
}
