// The overview's panels, each a section[data-panel] drawn from the data overview.js loaded.

import { hbars, histogram, timeSeries } from './charts.js';
import { empty, h } from './dom.js';
import * as fmt from './format.js';
import { align, errorTypes } from './series.js';

function panel(name, heading, ...children) {
  return h('section', { class: 'panel', 'data-panel': name, 'aria-labelledby': `h-${name}` },
    h('h2', { id: `h-${name}` }, heading), ...children);
}

function sub(text) {
  return h('h3', null, text);
}

export function requestsPanel(d) {
  const types = errorTypes(d.series);
  const series = [
    { name: 'ok', values: align(d.times, d.series, (r) => r.count - r.errors, 0), color: 0 },
    ...types.map(([t], i) => ({ name: t, values: align(d.times, d.series, (r) => (r.errors_by_type || {})[t] || 0, 0), color: 1 + (i % 7) })),
  ];
  const rate = align(d.times, d.series, (r) => r.error_rate);
  const summary = types.length
    ? `${fmt.int(d.total.errors)} errors (${fmt.pct(d.total.error_rate)}): ${types.map(([t, n]) => `${t} ${n}`).join(', ')}`
    : 'No errors in this range.';
  return panel('requests', 'Requests and errors',
    h('p', { class: 'note' }, summary),
    timeSeries({ label: 'Requests per bucket by outcome', times: d.times, widthS: d.widthS, series, kind: 'stacked', yFormat: fmt.int }),
    types.length ? sub('Error rate') : null,
    types.length ? timeSeries({ label: 'Error rate over time', times: d.times, widthS: d.widthS, series: [{ name: 'error rate', values: rate, color: 1 }], yFormat: fmt.pct }) : null);
}

export function latencyPanel(d) {
  const q = (key, p) => align(d.times, d.series, (r) => r[key][p]);
  const hasTtft = d.series.some((r) => r.ttft_ms.p50 !== null);
  const hist = histogram({ label: 'Latency distribution', bins: d.latencyBins.data, xFormat: fmt.ms });
  return panel('latency', 'Latency',
    sub(`Distribution (${fmt.int(d.latencyBins.count)} calls)`),
    hist,
    sub('p50 / p95 / p99 over time'),
    timeSeries({ label: 'Latency percentiles over time', times: d.times, widthS: d.widthS, yFormat: fmt.ms,
      series: [{ name: 'p50', values: q('latency_ms', 'p50') }, { name: 'p95', values: q('latency_ms', 'p95') }, { name: 'p99', values: q('latency_ms', 'p99') }] }),
    sub('Time to first token (streamed calls)'),
    hasTtft
      ? timeSeries({ label: 'Time to first token over time', times: d.times, widthS: d.widthS, yFormat: fmt.ms,
        series: [{ name: 'TTFT p50', values: q('ttft_ms', 'p50'), color: 3 }, { name: 'TTFT p95', values: q('ttft_ms', 'p95'), color: 4 }] })
      : h('p', { class: 'note' }, 'No streamed calls in this range (TTFT is measured on streams).'));
}

export function tokensPanel(d) {
  return panel('tokens', 'Tokens',
    h('p', { class: 'note' }, `${fmt.int(d.total.input_tokens)} input and ${fmt.int(d.total.output_tokens)} output tokens; per call p50 ${fmt.int(d.total.tokens.p50)}, p95 ${fmt.int(d.total.tokens.p95)}.`),
    timeSeries({ label: 'Input and output tokens over time', times: d.times, widthS: d.widthS, kind: 'area', yFormat: fmt.int,
      series: [{ name: 'input', values: align(d.times, d.series, (r) => r.input_tokens ?? 0, 0) }, { name: 'output', values: align(d.times, d.series, (r) => r.output_tokens ?? 0, 0), color: 2 }] }));
}

const COST_BY = [['model', 'Model'], ['tag:department', 'Department'], ['tag:feature', 'Feature'], ['user_id', 'User'], ['prompt_id', 'Prompt']];
const FILTER_OF = { model: 'model', user_id: 'user_id', prompt_id: 'prompt_id' };

function groupHref(by, group, query, ctx) {
  const next = new URLSearchParams(query);
  if (by.startsWith('tag:')) next.append('tag', `${by.slice(4)}:${group}`);
  else if (FILTER_OF[by]) next.set(FILTER_OF[by], group);
  else return null;
  return ctx.href('calls', null, next);
}

export function costPanel(d, by, onBy, ctx) {
  const choose = h('select', { id: 'cost-by', 'aria-label': 'Break cost down by', value: by },
    COST_BY.map(([v, label]) => h('option', { value: v }, label)));
  choose.addEventListener('change', () => onBy(choose.value));
  const rows = (d.breakdown || []).filter((r) => r.cost_usd !== null || r.count)
    .sort((a, b) => (b.cost_usd || 0) - (a.cost_usd || 0))
    .map((r) => ({ label: r.group === null ? '(none)' : r.group, value: r.cost_usd || 0, note: `${fmt.int(r.count)} calls`, href: r.group === null ? null : groupHref(d.breakdownBy, r.group, d.filterQuery, ctx) }));
  return panel('cost', 'Cost',
    h('p', { class: 'note' }, `${fmt.usd(d.total.cost_usd)} in this range.`),
    timeSeries({ label: 'Cost over time', times: d.times, widthS: d.widthS, kind: 'area', yFormat: fmt.usd,
      series: [{ name: 'cost', values: align(d.times, d.series, (r) => r.cost_usd ?? 0, 0), color: 5 }] }),
    h('div', { class: 'panel-tools' }, h('label', { for: 'cost-by' }, 'Broken down by '), choose),
    rows.length ? hbars({ label: 'Cost by group', rows, format: fmt.usd }) : empty('Nothing to break down.'));
}

const PROMPT_SORTS = [['cost', 'Cost', (r) => r.cost_usd || 0], ['latency', 'p95 latency', (r) => r.latency_ms.p95 || 0], ['tokens', 'Tokens', (r) => (r.input_tokens || 0) + (r.output_tokens || 0)]];

export function topPromptsPanel(d, sortKey, onSort, ctx) {
  if (!d.prompts.length) {
    return panel('top-prompts', 'Top prompts', empty('No call in this range has a prompt id.',
      h('p', null, 'Name prompts with ', h('code', null, "kansoku.context(prompt_id='support-answer', prompt_version='v4')"), ' to compare them here.')));
  }
  const pick = PROMPT_SORTS.find(([k]) => k === sortKey) || PROMPT_SORTS[0];
  const rows = [...d.prompts].sort((a, b) => pick[2](b) - pick[2](a)).slice(0, 10);
  const buttons = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Rank prompts by' },
    PROMPT_SORTS.map(([k, label]) => h('button', { type: 'button', id: `rank-${k}`, 'aria-pressed': k === pick[0] ? 'true' : 'false', onclick: () => onSort(k) }, label)));
  const q = new URLSearchParams(d.filterQuery);
  return panel('top-prompts', 'Top prompts', buttons,
    h('table', { class: 'grid-table' },
      h('thead', null, h('tr', null, ['Prompt', 'Calls', 'Errors', 'Cost', 'p50 latency', 'p95 latency', 'Tokens in / out'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows.map((r) => {
        const link = new URLSearchParams(q);
        link.set('prompt_id', r.group);
        return h('tr', null,
          h('td', null, h('a', { href: ctx.href('calls', null, link) }, r.group)),
          h('td', { class: 'num' }, fmt.int(r.count)),
          h('td', { class: 'num' }, fmt.pct(r.error_rate)),
          h('td', { class: 'num' }, fmt.usd(r.cost_usd)),
          h('td', { class: 'num' }, fmt.ms(r.latency_ms.p50)),
          h('td', { class: 'num' }, fmt.ms(r.latency_ms.p95)),
          h('td', { class: 'num' }, `${fmt.int(r.input_tokens)} / ${fmt.int(r.output_tokens)}`));
      }))));
}

export function recentPanel(d, ctx) {
  const rows = d.recent;
  return panel('recent', 'Recent calls',
    h('ul', { class: 'recent' }, rows.map((c) => h('li', { class: c.status === 'error' ? 'is-error' : null },
      h('a', { href: ctx.href('trace', c.trace_id, { span: c.span_id }), 'data-link': 'trace' },
        h('span', { class: 'when' }, fmt.time(c.timestamp)),
        h('span', { class: 'what' }, c.model || c.request_model || c.name),
        h('span', { class: 'text' }, fmt.truncate(c.input_text, 80))),
      h('span', { class: 'num' }, fmt.ms(c.latency_ms)),
      c.error_type ? h('span', { class: 'badge err' }, c.error_type) : h('span', { class: 'num' }, fmt.usd(c.cost_usd))))),
    h('p', null, h('a', { href: ctx.href('calls', null, d.filterQuery) }, 'All calls with these filters →')));
}
