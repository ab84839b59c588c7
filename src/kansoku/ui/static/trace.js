// A trace: the span waterfall (nesting, timing bars) and the selected span's details; an LLM
// call shows its conversation and numbers, the gateway's attempt spans sit under its call.

import * as api from './api.js';
import { empty, errorBox, h, replace } from './dom.js';
import * as fmt from './format.js';
import { callFacts, conversation, gatewayFacts, spanFacts } from './messages.js';

export const title = (id) => `Trace ${String(id || '').slice(0, 8)}`;

function flatten(nodes, depth = 0, out = []) {
  for (const n of nodes) {
    out.push({ span: n, depth });
    flatten(n.children || [], depth + 1, out);
  }
  return out;
}

const isAttempt = (s) => s.kind === 'client' && Object.keys(s.attributes || {}).some((k) => k.startsWith('kansoku.gateway.'));

function label(s) {
  if (s.type === 'llm_call') return h('span', { class: 'badge llm' }, 'LLM');
  if (isAttempt(s)) return h('span', { class: 'badge attempt' }, `attempt ${s.attributes['kansoku.gateway.attempt'] ?? ''}`.trim());
  return h('span', { class: 'badge kind' }, s.kind || 'span');
}

function waterfall(rows, t0, total, selected, ctx, traceId) {
  return h('div', { id: 'waterfall', class: 'waterfall', role: 'list', 'aria-label': 'Spans by start time' },
    h('div', { class: 'wf-scale', 'aria-hidden': 'true' }, h('span', null, '0'), h('span', null, fmt.ms(total / 2)), h('span', null, fmt.ms(total))),
    rows.map(({ span: s, depth }) => {
      const start = (s.start_time_unix_nano - t0) / 1e6;
      const bar = h('span', { class: `wf-bar ${s.status === 'error' ? 'err' : s.type === 'llm_call' ? 'llm' : isAttempt(s) ? 'attempt' : ''}` });
      bar.style.left = `${total > 0 ? (100 * start) / total : 0}%`;
      bar.style.width = `${total > 0 ? Math.max(0.3, (100 * s.latency_ms) / total) : 100}%`;
      const name = h('span', { class: 'wf-name' }, label(s), ' ', s.name, s.status === 'error' ? [' ', h('span', { class: 'badge err' }, s.error_type || 'error')] : null);
      name.style.paddingLeft = `${depth * 1.1}rem`;
      const isSel = s.span_id === selected;
      return h('div', { class: `wf-row${isSel ? ' selected' : ''}`, role: 'listitem', 'data-span-id': s.span_id, 'data-depth': depth },
        h('a', { href: ctx.href('trace', traceId, { span: s.span_id }), 'aria-current': isSel ? 'true' : null, class: 'wf-link' },
          name,
          h('span', { class: 'wf-track' }, bar),
          h('span', { class: 'wf-dur num' }, fmt.ms(s.latency_ms))));
    }));
}

function details(s, ctx) {
  if (!s) return null;
  const llm = s.type === 'llm_call';
  return h('section', { class: 'span-detail', 'aria-labelledby': 'span-title' },
    h('h2', { id: 'span-title' }, s.name, ' ', label(s)),
    llm ? h('div', { class: 'detail-grid' },
      h('div', null, h('h3', null, 'Conversation'), conversation(s)),
      h('div', null, h('h3', null, 'Call'), callFacts(s), gatewayFacts(s))) : gatewayFacts(s),
    !llm && s.status === 'error' ? errorBox(`${s.error_type || 'error'}: ${s.error_message || ''}`) : null,
    h('h3', null, 'Span'),
    spanFacts(s, { skipGateway: true }),
    s.context_id ? h('p', null, h('a', { href: ctx.href('session', s.context_id) }, 'This call’s session →')) : null);
}

export function mount(root, params, ctx) {
  let data = null;
  let current = params;
  let token = 0;

  const draw = () => {
    const rows = flatten(data.spans);
    const t0 = Math.min(...rows.map((r) => r.span.start_time_unix_nano));
    const end = Math.max(...rows.map((r) => r.span.end_time_unix_nano));
    const total = (end - t0) / 1e6;
    const wanted = current.get('span');
    const pick = rows.find((r) => r.span.span_id === wanted) || rows.find((r) => r.span.type === 'llm_call') || rows[0];
    const sessions = [...new Set(rows.map((r) => r.span.context_id).filter(Boolean))];
    const calls = rows.filter((r) => r.span.type === 'llm_call').map((r) => r.span);
    const cost = calls.reduce((a, c) => a + (c.cost_usd || 0), 0);
    const focusSpan = document.activeElement && document.activeElement.closest ? document.activeElement.closest('[data-span-id]') : null;
    replace(root,
      h('div', { class: 'page-head' },
        h('h1', null, 'Trace ', h('code', { class: 'id' }, data.trace_id)),
        h('p', { class: 'head-actions' }, h('a', { href: '#/calls' }, '← Calls'))),
      h('p', { class: 'meta' },
        `${fmt.time(data.start_time)} · ${fmt.ms(data.duration_ms)} · ${data.span_count} span${data.span_count === 1 ? '' : 's'} · ${calls.length} LLM call${calls.length === 1 ? '' : 's'}${calls.length ? ` · ${fmt.usd(cost)}` : ''}`,
        sessions.map((id) => [' · ', h('a', { href: ctx.href('session', id), 'data-link': 'session' }, `session ${id}`)])),
      waterfall(rows, t0, total, pick.span.span_id, ctx, data.trace_id),
      details(pick.span, ctx));
    if (focusSpan) {
      const again = root.querySelector(`[data-span-id="${CSS.escape(focusSpan.getAttribute('data-span-id'))}"] a`);
      if (again) again.focus();
    }
    ctx.setState('ready');
  };

  async function load() {
    const mine = ++token;
    ctx.setState('loading');
    try {
      data = await api.trace(ctx.id);
      if (mine !== token || !ctx.isCurrent()) return;
      draw();
    } catch (err) {
      if (mine !== token) return;
      if (ctx.showError(err)) return;
      if (err.status === 404) {
        replace(root, h('h1', null, 'Trace'), empty(`No trace ${ctx.id} in this project.`,
          h('p', null, 'It may be older than the retention, or not loaded yet (the collector loads within a second). ', h('a', { href: '#/calls' }, 'Find calls →'))));
        ctx.setState('empty');
      } else {
        replace(root, h('h1', null, 'Trace'), errorBox(err.message));
        ctx.setState('error');
      }
    }
  }

  load();
  return {
    update(next) {
      current = next;
      if (data) draw();
      else load();
    },
    unmount() {
      token++;
    },
  };
}
