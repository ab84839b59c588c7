// The gateway page: request outcomes, each route's deployments and their health, budgets against
// their limits, the rate limits with their use now and refusals, and the recent dead letters
// (replayable), from GET /api/v1/gateway/status. Without a gateway in this process, how to start one.

import * as api from './api.js';
import { code, empty, errorBox, h, replace } from './dom.js';
import * as fmt from './format.js';
import { autoRefresh } from './refresh.js';

export const title = () => 'Gateway';

const REFRESH_MS = 5000;
const REFRESH_KEY = 'kansoku.autoRefresh.gateway';
const ADMIN_KEY = 'kansoku.gatewayAdminKey';

const OUTCOMES = [
  ['ok', 'Answered', 'by a deployment'],
  ['template', 'Template answers', 'every deployment failed; the configured fallback answer'],
  ['dead_letter', 'Dead-lettered', 'retries and fallbacks exhausted'],
  ['client_error', 'Client errors', 'bad requests, unknown models'],
  ['rejected', 'Rejected', 'rate limits and budgets'],
];

const BREAKER = {
  closed: ['ok', 'Closed: calls go through'],
  open: ['err', 'Open: calls are refused until the breaker half-opens'],
  half_open: ['warn', 'Half-open: a few trial calls decide whether it closes'],
  unknown: ['', 'Unknown: the state backend could not be read'],
};

function startHint() {
  return [
    h('p', null, 'The gateway is an OpenAI-compatible proxy with retries, fallbacks, circuit breakers, rate limits and budgets. ',
      'Start it in the same process as this collector with ', code('kansoku up --gateway-config gateway.yaml'),
      ', or try it with made-up traffic: ', code('kansoku up --demo'), '.'),
    h('p', null, 'Then point the OpenAI SDK at it: ', code("OpenAI(base_url='http://127.0.0.1:4000/v1')"), '.'),
    h('p', { class: 'dim' }, 'Every request it serves is recorded as an LLM call (service ', code('kansoku-gateway'),
      '), with one child span per upstream attempt, in the ', h('a', { href: '#/calls' }, 'calls explorer'), '.'),
  ];
}

function section(name, heading) {
  const content = h('div', { class: 'panel-body' });
  const el = h('section', { class: 'panel', 'data-panel': name, 'aria-labelledby': `h-${name}` },
    h('h2', { id: `h-${name}` }, heading), content);
  return { el, content };
}

function table(headings, rows, attrs) {
  return h('div', { class: 'table-scroll' },
    h('table', { class: 'grid-table', ...(attrs || {}) },
      h('thead', null, h('tr', null, headings.map(([t, num]) => h('th', { scope: 'col', class: num ? 'num' : null }, t)))),
      h('tbody', null, rows)));
}

function tiles(d) {
  const counts = d.requests || {};
  const tile = (label, value, note) => h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, label), h('strong', null, value), note ? h('small', null, note) : null);
  return h('div', { class: 'tiles', 'aria-label': 'Requests since the gateway started', 'data-panel': 'requests' },
    OUTCOMES.map(([key, label, note]) => {
      const t = tile(label, fmt.int(counts[key] || 0), note);
      t.setAttribute('data-outcome', key);
      return t;
    }),
    tile('In flight', fmt.int(d.inflight || 0), 'requests being served now'));
}

// -- deployments ----------------------------------------------------------------------------------

function health(dep) {
  const [cls, help] = BREAKER[dep.breaker] || BREAKER.unknown;
  return h('span', { class: 'health' },
    h('span', { class: ['badge', cls], 'data-breaker': '', title: `Circuit breaker. ${help}` }, dep.breaker),
    dep.ejected_for_s !== null && dep.ejected_for_s !== undefined
      ? h('span', { class: 'badge warn', 'data-ejected': '', title: 'Taken out of rotation after consecutive failures' },
        `ejected ${fmt.ms(dep.ejected_for_s * 1000)}`)
      : null,
    dep.failure_streak ? h('span', { class: 'dim', title: 'Consecutive failed calls' }, `${fmt.int(dep.failure_streak)} failing in a row`) : null);
}

function routeBlock(route) {
  const meta = [`${route.routing} routing`];
  if (route.fallbacks && route.fallbacks.length) meta.push(`falls back to ${route.fallbacks.join(', ')}`);
  if (route.template) meta.push('template answer when all fail');
  const rows = (route.deployments || []).map((dep) => h('tr', { 'data-deployment': dep.name, class: dep.breaker === 'open' ? 'is-error' : null },
    h('td', null, h('span', { class: 'id' }, dep.name)),
    h('td', null, dep.region || '–'),
    h('td', null, health(dep)),
    h('td', { class: 'num' }, fmt.int(dep.in_flight)),
    h('td', { class: 'num' }, fmt.int(dep.calls)),
    h('td', { class: 'num' }, dep.calls ? `${fmt.pct(dep.error_rate)} (${fmt.int(dep.errors)})` : '–'),
    h('td', { class: 'num' }, fmt.ms(dep.mean_latency_ms)),
    h('td', { class: 'num' }, dep.latency_ewma_s === null || dep.latency_ewma_s === undefined ? '–' : fmt.ms(dep.latency_ewma_s * 1000))));
  return h('div', { class: 'route', 'data-model': route.name },
    h('h3', null, h('span', { class: 'route-name' }, route.name), ' ', h('small', { class: 'dim' }, meta.join(' · '))),
    rows.length
      ? table([['Deployment'], ['Region'], ['Health'], ['In flight', true], ['Calls', true], ['Errors', true], ['Mean latency', true], ['EWMA latency', true]],
        rows, { 'aria-label': `Deployments of ${route.name}` })
      : h('p', { class: 'note' }, 'No deployments.'));
}

function deploymentsContent(d) {
  if (!d.models || !d.models.length) return empty('No model routes are configured.', h('p', null, 'Add ', code('models:'), ' to the gateway configuration.'));
  return [
    h('p', { class: 'note' }, 'Calls, errors and mean latency count since the gateway started; the EWMA latency is what the router balances on.'),
    d.models.map(routeBlock),
  ];
}

// -- budgets and limits ---------------------------------------------------------------------------

function spendBar(label, spent, limit) {
  if (limit === null || limit === undefined) {
    return h('div', { class: 'spend' }, h('span', { class: 'spend-label' }, label),
      h('span', { class: 'dim' }, 'no limit'), h('span', { class: 'num' }, `${fmt.usd(spent)} spent`));
  }
  const share = limit > 0 ? spent / limit : 1;
  const bar = h('span', { class: ['bar', share >= 1 ? 'over' : share >= 0.8 ? 'near' : null], 'aria-hidden': 'true' });
  bar.style.width = `${Math.min(100, Math.max(0, 100 * share))}%`;
  return h('div', { class: 'spend', 'data-spend': label.toLowerCase() },
    h('span', { class: 'spend-label' }, label),
    h('span', { class: 'spend-track', role: 'img', 'aria-label': `${label}: ${fmt.usd(spent)} of ${fmt.usd(limit)} (${fmt.pct(share)})` }, bar),
    h('span', { class: 'num' }, `${fmt.usd(spent)} of ${fmt.usd(limit)}`, h('small', { class: 'dim' }, ` ${fmt.pct(share)}`)));
}

function budgetsContent(d) {
  if (!d.budgets || !d.budgets.length) {
    return empty('No budgets are configured.',
      h('p', null, 'Cap spend per key, user or department with ', code('budgets:'), ' or a key’s ', code('budget: {daily_usd: 5}'),
        ' in the gateway configuration; requests over a budget are refused.'));
  }
  return h('ul', { class: 'budgets' }, d.budgets.map((b) => h('li', { 'data-budget': `${b.per}:${b.subject}` },
    h('div', { class: 'budget-head' }, h('span', { class: 'badge' }, b.per), ' ', h('strong', null, b.subject)),
    spendBar('Today', b.spent_today_usd, b.daily_usd),
    spendBar('This month', b.spent_this_month_usd, b.monthly_usd))));
}

function rate(lim) {
  const unit = lim.on === 'tokens' ? 'tokens' : 'requests';
  if (lim.algorithm === 'token_bucket') return `${fmt.int(lim.limit)} ${unit} burst, refilling ${lim.per_s} per second`;
  return `${fmt.int(lim.limit)} ${unit} per ${fmt.ms(lim.window_s * 1000)} window`;
}

// One subject's use of a limit right now, as "used of limit" (spendBar's sibling). Red from 90 %:
// the next request, or the next large one, may be refused. data-usage is the subject ('' for
// the one gateway-wide count of a global limit).
function usageBar(u, unit) {
  const global = u.subject === null || u.subject === undefined;
  const who = global ? 'all' : u.subject;
  const label = h('span', { class: 'usage-label', title: global ? 'the whole gateway' : null }, who);
  if (u.used === null || u.used === undefined) {
    return h('div', { class: 'usage', 'data-usage': global ? '' : who }, label,
      h('span', { class: 'dim', 'data-usage-unknown': '', title: 'The state backend could not be read' }, 'unknown'));
  }
  const share = u.limit > 0 ? u.used / u.limit : 1;
  const near = share >= 0.9;
  const bar = h('span', { class: ['bar', near ? 'over' : null], 'aria-hidden': 'true' });
  bar.style.width = `${Math.min(100, Math.max(0, 100 * share))}%`;
  const text = `${fmt.int(u.used)} of ${fmt.int(u.limit)}`;
  return h('div', { class: ['usage', near ? 'is-near' : null], 'data-usage': global ? '' : who, 'data-used': u.used, 'data-limit-of': u.limit },
    label,
    h('span', { class: 'spend-track', role: 'img', 'aria-label': `${global ? 'the gateway' : who}: ${text} ${unit} (${fmt.pct(share)})` }, bar),
    h('span', { class: 'num' }, text));
}

// Under the bars, how many requests the limit refused: the panel is half the page wide, so
// this shares the cell rather than taking a column of its own.
function usageCell(lim) {
  const usage = lim.usage || [];
  const refused = lim.refused || 0;
  return h('td', { class: 'limit-usage' },
    usage.map((u) => usageBar(u, lim.on)),
    lim.subjects ? h('small', { class: 'dim usage-note', 'data-usage-note': '' }, lim.subjects) : null,
    h('small', { class: ['usage-refused', refused ? 'bad' : 'dim'], 'data-refused': String(refused), title: 'Requests this limit refused since the gateway started' },
      `${fmt.int(refused)} refused`));
}

function limitsContent(d) {
  if (!d.limits || !d.limits.length) {
    return empty('No rate limits are configured.',
      h('p', null, 'Limit requests or tokens per key, user, department or model with ', code('limits:'),
        ' (or a key’s own ', code('limits:'), ') in the gateway configuration.'));
  }
  return [
    h('p', { class: 'note' }, 'Used now: what each subject has used of the limit at this moment (a token bucket: its burst minus the tokens left), ',
      'and how many requests the limit refused since the gateway started.'),
    table([['Applies to'], ['On'], ['Algorithm'], ['Limit'], ['Used now']],
      d.limits.map((lim) => h('tr', { 'data-limit': '', 'data-per': lim.per, 'data-on': lim.on },
        h('td', null, lim.key ? ['key ', h('strong', null, lim.key)] : lim.per === 'global' ? 'the whole gateway' : `each ${lim.per}`),
        h('td', null, lim.on),
        h('td', null, lim.algorithm.replace('_', ' ')),
        h('td', null, rate(lim)),
        usageCell(lim))),
      { 'aria-label': 'Configured rate limits' }),
  ];
}

// -- dead letters ---------------------------------------------------------------------------------

const OUTCOME_TEXT = { ok: 'Answered', template: 'Template answer', dead_letter: 'Failed again' };

function replayResult(r, ctx) {
  if (!r) return null;
  if (r.pending) return h('span', { class: 'dim', 'data-replay-pending': '' }, 'Replaying…');
  if (r.error) return h('span', { class: 'replay-outcome bad', 'data-replay-outcome': 'error', role: 'status' }, r.error);
  const b = r.body;
  const good = r.status === 200;
  const detail = b.error ? ` (${b.error.type}${b.error.status ? `, HTTP ${b.error.status}` : ''})` : '';
  return h('span', { class: ['replay-outcome', good ? 'good' : 'bad'], 'data-replay-outcome': b.outcome || (good ? 'ok' : 'failed'), role: 'status' },
    `${OUTCOME_TEXT[b.outcome] || b.outcome || (good ? 'Answered' : 'Failed')}${detail}`,
    typeof b.attempts !== 'number' ? '' : b.attempts ? ` after ${b.attempts} attempt${b.attempts === 1 ? '' : 's'}` : ', no deployment was tried',
    b.trace_id ? [' · ', h('a', { href: ctx.href('trace', b.trace_id), 'data-link': 'trace' }, 'trace')] : null);
}

function lettersContent(d, replays, onReplay, ctx) {
  if (!d.dead_letters || !d.dead_letters.length) {
    return empty('No dead letters.',
      h('p', null, 'A request that exhausts its retries and fallbacks is kept here, to be replayed once the provider recovers ',
        '(also with ', code('kansoku dead-letters list'), ').'));
  }
  return [
    h('p', { class: 'note' }, 'The newest requests that exhausted retries and fallbacks. A replay sends the stored request through the router again.'),
    table([['Created'], ['Model'], ['Key'], ['Attempts', true], ['Last error'], ['Replays', true], ['Replay'], ['Result']],
      d.dead_letters.map((dl) => {
        const r = replays.get(dl.id);
        return h('tr', { 'data-letter-id': dl.id },
          h('td', { class: 'nowrap' }, fmt.time(new Date(dl.created_ns / 1e6).toISOString())),
          h('td', null, dl.model),
          h('td', null, dl.key_name || h('span', { class: 'dim' }, 'none')),
          h('td', { class: 'num' }, fmt.int(dl.attempts)),
          h('td', null, dl.last_error ? h('span', { class: 'badge err' }, dl.last_error) : '–'),
          h('td', { class: 'num' }, fmt.int(dl.replays)),
          h('td', null, h('button', { type: 'button', id: `replay-${dl.id}`, 'data-action': 'replay', disabled: Boolean(r && r.pending),
            'aria-label': `Replay dead letter ${dl.id}`, onclick: () => onReplay(dl.id) }, 'Replay')),
          h('td', { class: 'replay-cell', 'aria-live': 'polite' }, replayResult(r, ctx)));
      }),
      { 'aria-label': 'Recent dead letters' }),
  ];
}

// -- the page -------------------------------------------------------------------------------------

export function mount(root, params, ctx) {
  let data = null;
  let token = 0;
  let live = true;
  const replays = new Map(); // letter id → {pending} | {status, body} | {error}
  let waiting = null; // the letter id whose replay waits for the admin key
  let refocus = null; // the id of a replay button to give focus back to once it is enabled again
  const status = h('span', { class: 'updated', 'aria-live': 'polite' });
  const auto = autoRefresh(() => load(true), { ms: REFRESH_MS, key: REFRESH_KEY });
  const summary = h('div', { class: 'tiles-slot' });
  const deployments = section('deployments', 'Routes and deployments');
  const budgets = section('budgets', 'Budgets');
  const limits = section('limits', 'Rate limits');
  const letters = section('dead-letters', 'Dead letters');
  const adminSlot = h('div', { class: 'admin-slot' });
  letters.el.insertBefore(adminSlot, letters.content);
  deployments.el.classList.add('wide');
  letters.el.classList.add('wide');
  const body = h('div', { class: 'panels' });

  function draw() {
    if (!data || !live) return;
    const active = body.contains(document.activeElement) ? document.activeElement.id : '';
    const target = active || refocus;
    replace(summary, tiles(data));
    replace(deployments.content, deploymentsContent(data));
    replace(budgets.content, budgetsContent(data));
    replace(limits.content, limitsContent(data));
    replace(letters.content, lettersContent(data, replays, replay, ctx));
    if (body.firstChild !== summary) replace(body, summary, deployments.el, budgets.el, limits.el, letters.el);
    const el = target ? document.getElementById(target) : null;
    if (el && !el.disabled) {
      el.focus();
      if (target === refocus) refocus = null;
    }
    ctx.setState('ready');
  }

  function noGateway() {
    data = null;
    replace(body, empty('No gateway runs in this process.', startHint()));
    ctx.setState('empty');
  }

  async function load(quiet = false) {
    const mine = ++token;
    if (!quiet) {
      ctx.setState('loading');
      status.textContent = 'Loading…';
    }
    try {
      const res = await api.gatewayStatus();
      if (mine !== token || !live) return;
      data = res;
      status.textContent = `Updated ${fmt.time(new Date().toISOString())}`;
      draw();
    } catch (err) {
      if (mine !== token || !live) return;
      if (err.status === 404 && err.code === 'no_gateway') {
        status.textContent = `Checked ${fmt.time(new Date().toISOString())}`;
        noGateway();
      } else if (!ctx.showError(err)) {
        replace(body, errorBox(err.message));
        ctx.setState('error');
      }
    }
  }

  function adminForm(message) {
    const input = h('input', { name: 'admin-key', id: 'admin-key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'admin-key-help' });
    const form = h('form', { id: 'admin-key-form', class: 'admin-key-form' },
      h('p', { id: 'admin-key-help' }, 'Replaying sends the request to a provider again, so this gateway asks for one of its ',
        code('admin_keys'), '. It is kept in this tab only (sessionStorage) and sent as ', code('X-Kansoku-Admin-Key'), '.'),
      message ? errorBox(message) : null,
      h('div', { class: 'admin-key-row' },
        h('label', { class: 'field' }, h('span', null, 'Admin key'), input),
        h('button', { type: 'submit', class: 'primary' }, 'Replay with this key'),
        h('button', { type: 'button', onclick: () => { waiting = null; replace(adminSlot); } }, 'Cancel')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      input.value = '';
      if (!key) return;
      sessionStorage.setItem(ADMIN_KEY, key);
      const id = waiting;
      waiting = null;
      replace(adminSlot);
      if (id) replay(id);
    });
    replace(adminSlot, form);
    input.focus();
  }

  async function replay(id) {
    const current = replays.get(id);
    if (current && current.pending) return;
    const adminKey = sessionStorage.getItem(ADMIN_KEY);
    if (document.activeElement && document.activeElement.id === `replay-${id}`) refocus = `replay-${id}`;
    replays.set(id, { pending: true });
    draw();
    let result;
    try {
      const res = await api.replayLetter(id, adminKey);
      result = res.body && res.body.outcome ? res : { error: `The replay failed (HTTP ${res.status}).` };
    } catch (err) {
      if (err.status === 401 && err.code === 'admin_key_required') {
        replays.delete(id);
        if (adminKey) sessionStorage.removeItem(ADMIN_KEY);
        waiting = id;
        if (live) {
          draw();
          adminForm(adminKey ? 'That admin key was not accepted.' : null);
        }
        return;
      }
      if (err.status === 401 || err.status === 403) {
        if (err.code !== 'admin_api_closed' && live && ctx.showError(err)) return;
      }
      result = { error: err.message };
    }
    replays.set(id, result);
    if (!live) return;
    draw();
    load(true); // the counts and the letter's replays changed
  }

  replace(root,
    h('div', { class: 'page-head' }, h('h1', null, 'Gateway'), h('div', { class: 'head-actions' }, status, auto.button)),
    body);
  load();
  auto.start();

  return {
    update() {
      load(true);
    },
    unmount() {
      live = false;
      auto.stop();
      token++;
    },
  };
}
