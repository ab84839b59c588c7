// The filter bar shared by the overview and the calls explorer: a form#filters whose fields are
// named like the API's parameters. The URL (hash) is the state: a change rewrites it, and the
// page reloads its data from it.

import { h } from './dom.js';
import { fromLocalInput, toLocalInput } from './format.js';

export const RANGES = ['15m', '1h', '6h', '24h', '7d', '30d'];
export const DEFAULT_RANGE = '24h';
export const ERROR_TYPES = [
  'rate_limit', 'timeout', 'context_length_exceeded', 'content_policy', 'auth', 'bad_request',
  'server_error', 'connection', 'invalid_output', 'budget_exceeded', 'circuit_open', 'cancelled', 'unknown',
];
const RANGE_LABELS = { '15m': 'Last 15 minutes', '1h': 'Last hour', '6h': 'Last 6 hours', '24h': 'Last 24 hours', '7d': 'Last 7 days', '30d': 'Last 30 days', custom: 'Custom…' };

/** The filter values of a hash query as API parameters (tag repeats; empty values dropped). */
export function apiParams(params, names) {
  const out = {};
  for (const name of names) {
    const values = params.getAll(name).filter((v) => v !== '');
    if (values.length) out[name] = name === 'tag' ? values : values[0];
  }
  if (names.includes('since') && !out.since && !out.until) out.since = DEFAULT_RANGE;
  return out;
}

export function rangeOf(params) {
  const since = params.get('since');
  if (!since && !params.get('until')) return DEFAULT_RANGE;
  return RANGES.includes(since) && !params.get('until') ? since : 'custom';
}

function field(label, control, wide) {
  return h('label', { class: wide ? 'field wide' : 'field' }, h('span', null, label), control);
}

function control(spec, params) {
  const value = spec.name === 'tag' ? params.getAll('tag').join(' ') : params.get(spec.name) || '';
  if (spec.options) {
    return h('select', { name: spec.name, value },
      h('option', { value: '' }, spec.any || 'any'),
      spec.options.map((o) => h('option', { value: o }, o)));
  }
  return h('input', {
    name: spec.name, value, type: spec.type || 'text', placeholder: spec.placeholder || '',
    list: spec.list ? `dl-${spec.name}` : null, min: spec.type === 'number' ? '0' : null,
    step: spec.step || null, autocomplete: 'off', spellcheck: 'false',
  });
}

/**
 * fields: [{name, label, options?, type?, placeholder?, list?}] (the time range is always there);
 * onChange(URLSearchParams) gets the new filter values.
 */
export function filterForm(fields, params, onChange) {
  const range = rangeOf(params);
  const rangeSelect = h('select', { id: 'range', 'aria-label': 'Time range', value: range },
    [...RANGES, 'custom'].map((r) => h('option', { value: r }, RANGE_LABELS[r])));
  const since = h('input', { type: 'datetime-local', name: 'since', value: range === 'custom' ? toLocalInput(params.get('since') || '') : '' });
  const until = h('input', { type: 'datetime-local', name: 'until', value: range === 'custom' ? toLocalInput(params.get('until') || '') : '' });
  const custom = h('div', { class: 'custom-range' }, field('From', since), field('To', until));
  const lists = fields.filter((f) => f.list).map((f) => h('datalist', { id: `dl-${f.name}` }));
  const form = h('form', { id: 'filters', class: 'filters', role: 'search', 'aria-label': 'Filters' },
    field('Time', rangeSelect), custom,
    fields.map((f) => field(f.label, control(f, params), f.wide)),
    lists,
    h('div', { class: 'filter-actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('button', { type: 'button', class: 'link', onclick: () => onChange(new URLSearchParams()) }, 'Clear')));
  const showCustom = () => {
    const on = rangeSelect.value === 'custom';
    custom.hidden = !on;
    since.disabled = !on;
    until.disabled = !on;
  };
  showCustom();

  const collect = () => {
    const out = new URLSearchParams();
    if (rangeSelect.value === 'custom') {
      const s = fromLocalInput(since.value);
      const u = fromLocalInput(until.value);
      if (s) out.set('since', s);
      if (u) out.set('until', u);
      if (!s && !u) return null; // wait until a time is entered
    } else {
      out.set('since', rangeSelect.value);
    }
    for (const f of fields) {
      const el = form.elements.namedItem(f.name);
      const v = el.value.trim();
      if (!v) continue;
      if (f.name === 'tag') v.split(/[\s,]+/).filter(Boolean).forEach((t) => out.append('tag', t));
      else out.set(f.name, v);
    }
    return out;
  };
  const fire = () => {
    const next = collect();
    if (next) onChange(next);
  };
  rangeSelect.addEventListener('change', () => {
    showCustom();
    if (rangeSelect.value === 'custom') {
      const from = new Date(Date.now() - 86400000).toISOString();
      if (!since.value) since.value = toLocalInput(from);
      since.focus();
    }
    fire();
  });
  form.addEventListener('change', (ev) => {
    if (ev.target !== rangeSelect) fire();
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    fire();
  });
  return form;
}

/** Fill the datalists of a filter form with known values (e.g. models seen in the last 30 days). */
// Suggestions for the filter fields: one grouped query per field, shared by the pages and kept
// for a few minutes. They are fetched after the page's own data, never competing with it.
const SUGGEST_TTL_MS = 5 * 60 * 1000;
const suggested = new Map();

export async function suggest(form, names, stats) {
  for (const name of names) {
    let hit = suggested.get(name);
    if (!hit || Date.now() - hit.at > SUGGEST_TTL_MS) {
      try {
        const res = await stats({ since: '7d', group_by: name, limit: 200 });
        hit = { at: Date.now(), values: res.data.map((r) => r.group) };
        suggested.set(name, hit);
      } catch (err) {
        return; // a convenience: the page reports its own errors
      }
    }
    if (form) fillList(form, name, hit.values);
  }
}

export function fillList(form, name, values) {
  const list = form.querySelector(`#dl-${name}`);
  if (!list) return;
  for (const v of values) if (v) list.appendChild(h('option', { value: v }));
}
