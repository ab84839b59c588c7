// The overview: every panel follows the same filters and time range (the URL's query).

import * as api from './api.js';
import { empty, errorBox, h, replace } from './dom.js';
import { apiParams, filterForm, suggest } from './filters.js';
import * as fmt from './format.js';
import { costPanel, latencyPanel, recentPanel, requestsPanel, tokensPanel, topPromptsPanel } from './panels.js';
import { autoRefresh } from './refresh.js';
import { bucketFor, grid, windowOf } from './series.js';

export const title = () => 'Overview';

const FILTERS = ['model', 'provider', 'prompt_id', 'prompt_version', 'environment', 'service', 'tag', 'since', 'until'];
const FIELDS = [
  { name: 'model', label: 'Model', list: true, placeholder: 'any' },
  { name: 'provider', label: 'Provider', list: true, placeholder: 'any' },
  { name: 'prompt_id', label: 'Prompt', list: true, placeholder: 'any' },
  { name: 'environment', label: 'Environment', list: true, placeholder: 'any' },
  { name: 'service', label: 'Service', list: true, placeholder: 'any' },
  { name: 'tag', label: 'Tags', placeholder: 'department:support', wide: true },
];
const REFRESH_MS = 15000;
const RECENT = 10; // rows in 'Recent calls' (whole calls with their text: only what is shown)
const REFRESH_KEY = 'kansoku.autoRefresh';

export function sendDataHint() {
  return [
    h('p', null, 'Send calls from Python with ', h('code', null, "kansoku.init(export='" + location.origin + "')"),
      ', from any OpenTelemetry app with ', h('code', null, 'OTEL_EXPORTER_OTLP_ENDPOINT=' + location.origin), ','),
    h('p', null, 'or point the OpenAI SDK at the gateway: ', h('code', null, "OpenAI(base_url='http://127.0.0.1:4000/v1')"),
      '. To try it with made-up traffic, run ', h('code', null, 'kansoku up --demo'), '.'),
    h('p', { class: 'dim' }, 'When the collector has keys, senders need an ingest key: ', h('code', null, 'kansoku keys create --project P --scope ingest'), '.'),
  ];
}

function tiles(row) {
  const tile = (label, value, note) => h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, label), h('strong', null, value), note ? h('small', null, note) : null);
  return h('div', { class: 'tiles', 'aria-label': 'Totals' },
    tile('Requests', fmt.int(row.count)),
    tile('Error rate', fmt.pct(row.error_rate), `${fmt.int(row.errors)} errors`),
    tile('Latency p50 / p95', `${fmt.ms(row.latency_ms.p50)} / ${fmt.ms(row.latency_ms.p95)}`, `p99 ${fmt.ms(row.latency_ms.p99)}`),
    tile('TTFT p50', fmt.ms(row.ttft_ms.p50), row.ttft_ms.p95 === null ? 'streamed calls only' : `p95 ${fmt.ms(row.ttft_ms.p95)}`),
    tile('Tokens in / out', `${fmt.int(row.input_tokens)} / ${fmt.int(row.output_tokens)}`),
    tile('Cost', fmt.usd(row.cost_usd)));
}

export function mount(root, params, ctx) {
  let state = { params, costBy: 'model', promptSort: 'cost', data: null };
  let token = 0;
  const status = h('span', { class: 'updated', 'aria-live': 'polite' });
  const auto = autoRefresh(() => load(true), { ms: REFRESH_MS, key: REFRESH_KEY });
  const body = h('div', { class: 'panels' });
  let form = null;

  const draw = () => {
    const { data } = state;
    if (!data) return;
    const filtered = FILTERS.some((n) => n !== 'since' && n !== 'until' && state.params.get(n));
    if (!data.total || !data.total.count) {
      replace(body, empty(filtered ? 'No calls match these filters in this time range.' : 'No LLM calls in this time range yet.',
        filtered ? h('p', null, 'Widen the time range or ', h('a', { href: '#/overview' }, 'clear the filters'), '.') : sendDataHint()));
      ctx.setState('empty');
      return;
    }
    const onCostBy = (by) => { state.costBy = by; loadBreakdown(); };
    const onSort = (key) => { state.promptSort = key; draw(); };
    const activeId = body.contains(document.activeElement) ? document.activeElement.id : '';
    replace(body,
      tiles(data.total),
      requestsPanel(data),
      latencyPanel(data),
      tokensPanel(data),
      costPanel(data, state.costBy, onCostBy, ctx),
      topPromptsPanel(data, state.promptSort, onSort, ctx),
      recentPanel(data, ctx));
    if (activeId && document.getElementById(activeId)) document.getElementById(activeId).focus();
    ctx.setState('ready');
  };

  async function loadBreakdown() {
    const mine = token;
    const filters = apiParams(state.params, FILTERS);
    try {
      const res = await api.stats({ ...filters, group_by: state.costBy, limit: 20, quantiles: 'false' });
      if (mine !== token || !state.data) return;
      state.data.breakdown = res.data;
      state.data.breakdownBy = state.costBy;
      draw();
    } catch (err) {
      if (!ctx.showError(err)) replace(body, errorBox(err.message));
    }
  }

  async function load(quiet = false) {
    const mine = ++token;
    const filters = apiParams(state.params, FILTERS);
    const win = windowOf(filters);
    const widthS = bucketFor(win);
    if (!quiet) {
      ctx.setState('loading');
      status.textContent = 'Loading…';
    }
    try {
      const [total, series, latencyBins, recent, breakdown, prompts] = await Promise.all([
        api.stats(filters),
        api.stats({ ...filters, since: filters.since || new Date(win.since).toISOString(), bucket: widthS, quantiles: 'latency_ms,ttft_ms' }),
        api.histogram({ ...filters, field: 'latency_ms' }),
        api.calls({ ...filters, limit: RECENT }),
        api.stats({ ...filters, group_by: state.costBy, limit: 20, quantiles: 'false' }),
        api.stats({ ...filters, group_by: 'prompt_id', limit: 100, quantiles: 'latency_ms' }),
      ]);
      if (mine !== token || !ctx.isCurrent()) return;
      state.data = {
        total: total.data[0] || null,
        times: grid(win, widthS),
        widthS,
        series: series.data,
        latencyBins,
        recent: recent.data,
        breakdown: breakdown.data,
        breakdownBy: state.costBy,
        prompts: prompts.data.filter((r) => r.group !== null),
        filterQuery: state.params,
      };
      status.textContent = `Updated ${fmt.time(new Date().toISOString())}`;
      draw();
    } catch (err) {
      if (mine !== token) return;
      if (!ctx.showError(err)) {
        replace(body, errorBox(err.message));
        ctx.setState('error');
      }
    }
  }

  const suggestions = () => suggest(form, ['model', 'provider', 'prompt_id', 'environment', 'service'], api.stats);

  const render = () => {
    form = filterForm(FIELDS, state.params, (next) => ctx.go('overview', null, next));
    replace(root,
      h('div', { class: 'page-head' }, h('h1', null, 'Overview'), h('div', { class: 'head-actions' }, status, auto.button)),
      form, body);
  };

  render();
  load().then(suggestions); // after the panels: suggestions must not slow the first paint
  auto.start();

  return {
    update(next) {
      state.params = next;
      const active = document.activeElement;
      const focused = active && (active.id || active.getAttribute('name'));
      render();
      if (focused) {
        const el = form.querySelector(`#${CSS.escape(focused)}`) || form.elements.namedItem(focused);
        if (el && el.focus) el.focus();
      }
      load().then(suggestions);
    },
    unmount() {
      auto.stop();
      token++;
    },
  };
}
