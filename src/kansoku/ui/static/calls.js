// The calls explorer: filters, sortable columns, cursor pages; the URL holds the whole view.

import * as api from './api.js';
import { empty, errorBox, h, replace } from './dom.js';
import { ERROR_TYPES, apiParams, filterForm, suggest } from './filters.js';
import * as fmt from './format.js';
import { sendDataHint } from './overview.js';

export const title = () => 'Calls';

const FILTER_NAMES = ['user_id', 'context_id', 'prompt_id', 'prompt_version', 'model', 'provider', 'environment', 'service',
  'error_type', 'status', 'tag',
  'since', 'until', 'q', 'min_latency_ms', 'min_tokens', 'min_cost', 'type'];
const VIEW_NAMES = ['sort', 'order', 'cursor', 'limit'];
const FIELDS = [
  { name: 'q', label: 'Search text', placeholder: 'words in input or output', wide: true, type: 'search' },
  { name: 'model', label: 'Model', list: true, placeholder: 'any' },
  { name: 'provider', label: 'Provider', list: true, placeholder: 'any' },
  { name: 'environment', label: 'Environment', list: true, placeholder: 'any' },
  { name: 'service', label: 'Service', list: true, placeholder: 'any' },
  { name: 'user_id', label: 'User', placeholder: 'any' },
  { name: 'context_id', label: 'Session', placeholder: 'any' },
  { name: 'prompt_id', label: 'Prompt id', list: true, placeholder: 'any' },
  { name: 'prompt_version', label: 'Prompt version', placeholder: 'any' },
  { name: 'status', label: 'Status', options: ['ok', 'error', 'unset'] },
  { name: 'error_type', label: 'Error type', options: ERROR_TYPES },
  { name: 'tag', label: 'Tags', placeholder: 'feature:search', wide: true },
  { name: 'min_latency_ms', label: 'Min latency (ms)', type: 'number', placeholder: '0' },
  { name: 'min_tokens', label: 'Min tokens', type: 'number', placeholder: '0' },
  { name: 'min_cost', label: 'Min cost ($)', type: 'number', placeholder: '0', step: 'any' },
  { name: 'type', label: 'Records', options: ['llm_call', 'span', 'all'], any: 'LLM calls' },
];
const SORTABLE = { latency_ms: 'Latency', total_tokens: 'Tokens', cost_usd: 'Cost' };
const PAGE = 50;

function sortHeader(key, label, params, ctx) {
  const sort = params.get('sort') || 'timestamp';
  const order = params.get('order') || 'desc';
  const active = sort === key;
  const next = new URLSearchParams(params);
  next.delete('cursor');
  next.set('sort', key);
  next.set('order', active && order === 'desc' ? 'asc' : 'desc');
  const arrow = active ? (order === 'desc' ? ' ↓' : ' ↑') : '';
  return h('th', { scope: 'col', class: key === 'timestamp' ? null : 'num', 'aria-sort': active ? (order === 'desc' ? 'descending' : 'ascending') : null },
    h('a', { href: ctx.href('calls', null, next), class: 'sort', 'data-sort': key, title: `Sort by ${label.toLowerCase()}` }, label + arrow));
}

function statusCell(c) {
  if (c.status === 'error') return h('span', { class: 'badge err', title: c.error_message || '' }, c.error_type || 'error');
  return h('span', { class: `badge ${c.status}` }, c.status_code ? `${c.status} ${c.status_code}` : c.status);
}

function row(c, ctx) {
  const prompt = c.prompt_id ? `${c.prompt_id}${c.prompt_version ? `@${c.prompt_version}` : ''}` : '';
  return h('tr', { 'data-trace-id': c.trace_id, 'data-span-id': c.span_id, class: c.status === 'error' ? 'is-error' : null },
    h('td', { class: 'nowrap' }, h('a', { href: ctx.href('trace', c.trace_id, { span: c.span_id }), 'data-link': 'trace', title: c.timestamp }, fmt.time(c.timestamp))),
    h('td', null, c.model || c.request_model || c.name, c.provider ? h('small', { class: 'dim' }, ` ${c.provider}`) : null),
    h('td', { class: 'text-cell' }, fmt.truncate(c.input_text ?? c.name, 90),
      c.output_text ? h('small', { class: 'dim block' }, '→ ', fmt.truncate(c.output_text, 90)) : null),
    h('td', null, prompt),
    h('td', null, c.user_id || ''),
    h('td', { class: 'nowrap' }, c.context_id ? h('a', { href: ctx.href('session', c.context_id), 'data-link': 'session' }, fmt.truncate(c.context_id, 24)) : ''),
    h('td', null, statusCell(c)),
    h('td', { class: 'num' }, fmt.ms(c.latency_ms), c.ttft_ms !== null && c.ttft_ms !== undefined ? h('small', { class: 'dim block' }, `TTFT ${fmt.ms(c.ttft_ms)}`) : null),
    h('td', { class: 'num' }, fmt.tokens(c)),
    h('td', { class: 'num' }, fmt.usd(c.cost_usd)));
}

export function mount(root, params, ctx) {
  let token = 0;
  let form = null;
  const results = h('div', { class: 'results' });
  let current = params;

  const filtersOf = (p) => {
    const next = new URLSearchParams();
    for (const [k, v] of p) if (!VIEW_NAMES.includes(k) || k === 'sort' || k === 'order') next.append(k, v);
    return next;
  };

  const render = () => {
    form = filterForm(FIELDS, current, (next) => {
      const keep = filtersOf(current);
      for (const k of ['sort', 'order']) if (keep.get(k)) next.set(k, keep.get(k));
      ctx.go('calls', null, next);
    });
    replace(root, h('div', { class: 'page-head' }, h('h1', null, 'Calls')), form, results);
  };

  async function load() {
    const mine = ++token;
    ctx.setState('loading');
    const q = { ...apiParams(current, FILTER_NAMES), ...apiParams(current, VIEW_NAMES) };
    q.limit = q.limit || PAGE;
    try {
      const page = await api.calls(q);
      if (mine !== token || !ctx.isCurrent()) return;
      draw(page);
    } catch (err) {
      if (mine !== token) return;
      if (!ctx.showError(err)) {
        replace(results, errorBox(err.param ? `${err.message}` : err.message));
        ctx.setState('error');
      }
    }
  }

  function draw(page) {
    const refocus = document.activeElement ? document.activeElement.id : '';
    if (!page.data.length) {
      const first = !current.get('cursor');
      const anyFilter = [...current.keys()].some((k) => FILTER_NAMES.includes(k) && k !== 'since');
      replace(results, empty(first ? 'No calls match.' : 'No more calls.',
        first && !anyFilter ? sendDataHint() : h('p', null, 'Widen the time range or ', h('a', { href: '#/calls' }, 'clear the filters'), '.')));
      ctx.setState('empty');
      return;
    }
    const head = h('tr', null,
      sortHeader('timestamp', 'Time', current, ctx),
      ['Model', 'Input → output', 'Prompt', 'User', 'Session', 'Status'].map((t) => h('th', { scope: 'col' }, t)),
      Object.entries(SORTABLE).map(([k, label]) => sortHeader(k, label, current, ctx)));
    const next = h('button', { type: 'button', id: 'next-page', disabled: !page.has_more }, 'Next page →');
    next.addEventListener('click', () => {
      const p = new URLSearchParams(current);
      p.set('cursor', page.next_cursor);
      ctx.go('calls', null, p);
    });
    const first = new URLSearchParams(current);
    first.delete('cursor');
    replace(results,
      h('div', { class: 'table-wrap' },
        h('table', { id: 'calls', class: 'grid-table calls' },
          h('caption', { class: 'visually-hidden' }, 'LLM calls'),
          h('thead', null, head),
          h('tbody', null, page.data.map((c) => row(c, ctx))))),
      h('div', { class: 'pager' },
        current.get('cursor') ? h('a', { href: ctx.href('calls', null, first), class: 'button' }, '← First page') : null,
        h('span', { class: 'dim' }, `${page.data.length} call${page.data.length === 1 ? '' : 's'}${page.has_more ? ', more on the next page' : ''}`),
        next));
    if (refocus === 'next-page') (page.has_more ? next : results.querySelector('a[data-link="trace"]')).focus();
    ctx.setState('ready');
  }

  const suggestions = () => suggest(form, ['model', 'provider', 'prompt_id', 'environment', 'service'], api.stats);

  render();
  load().then(suggestions); // after the rows: suggestions must not slow the first paint
  return {
    update(next) {
      const active = document.activeElement;
      const focused = active && form.contains(active) ? active.id || active.getAttribute('name') : null;
      const onlyPage = filtersOf(next).toString() === filtersOf(current).toString();
      current = next;
      if (!onlyPage) {
        render();
        if (focused) {
          const el = form.querySelector(`#${CSS.escape(focused)}`) || form.elements.namedItem(focused);
          if (el && el.focus) el.focus();
        }
      }
      const loaded = load();
      if (!onlyPage) loaded.then(suggestions);
    },
    unmount() {
      token++;
    },
  };
}
