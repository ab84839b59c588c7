// A session: the conversation across its calls in order, with each turn's numbers.

import * as api from './api.js';
import { empty, errorBox, h, replace } from './dom.js';
import * as fmt from './format.js';
import { conversation } from './messages.js';

export const title = (id) => `Session ${id || ''}`;

const same = (a, b) => a && b && a.role === b.role && JSON.stringify(a.content ?? null) === JSON.stringify(b.content ?? null);

/** How many of this call's input messages the previous turns already showed. */
function seen(prev, input) {
  if (!prev || !Array.isArray(input)) return 0;
  const before = [...(prev.input_messages || []), ...(prev.output_messages || [])];
  let n = 0;
  while (n < before.length && n < input.length - 1 && same(before[n], input[n])) n++;
  return n === (prev.input_messages || []).length || n === before.length ? n : 0;
}

function turn(c, i, prev, ctx) {
  const facts = [
    fmt.time(c.timestamp), c.model || c.request_model || '', fmt.ms(c.latency_ms),
    c.ttft_ms !== null && c.ttft_ms !== undefined ? `TTFT ${fmt.ms(c.ttft_ms)}` : null,
    `${fmt.tokens(c)} tokens`, fmt.usd(c.cost_usd),
  ].filter(Boolean);
  return h('article', { class: `turn${c.status === 'error' ? ' is-error' : ''}`, 'data-trace-id': c.trace_id, 'data-span-id': c.span_id, 'aria-labelledby': `turn-${i}` },
    h('header', { class: 'turn-head' },
      h('h2', { id: `turn-${i}` }, `Turn ${i + 1}`),
      h('span', { class: 'meta' }, facts.join(' · ')),
      c.status === 'error' ? h('span', { class: 'badge err' }, c.error_type || 'error') : null,
      h('a', { href: ctx.href('trace', c.trace_id, { span: c.span_id }), 'data-link': 'trace' }, 'Trace →')),
    conversation(c, { skip: seen(prev, c.input_messages) }));
}

export function mount(root, params, ctx) {
  let token = 0;

  async function load() {
    const mine = ++token;
    ctx.setState('loading');
    try {
      const s = await api.session(ctx.id);
      if (mine !== token || !ctx.isCurrent()) return;
      const filter = new URLSearchParams({ context_id: s.context_id, since: '30d' });
      replace(root,
        h('div', { class: 'page-head' },
          h('h1', null, 'Session ', h('code', { class: 'id' }, s.context_id)),
          h('p', { class: 'head-actions' }, h('a', { href: ctx.href('calls', null, filter) }, 'These calls in the table →'))),
        h('p', { class: 'meta' }, [
          `${s.call_count} call${s.call_count === 1 ? '' : 's'}`,
          `${fmt.time(s.start_time)} – ${fmt.time(s.end_time)}`,
          `${fmt.int(s.input_tokens)} input / ${fmt.int(s.output_tokens)} output tokens`,
          fmt.usd(s.cost_usd),
        ].join(' · ')),
        h('div', { id: 'turns', class: 'turns' }, s.calls.map((c, i) => turn(c, i, s.calls[i - 1], ctx))));
      ctx.setState(s.calls.length ? 'ready' : 'empty');
    } catch (err) {
      if (mine !== token) return;
      if (ctx.showError(err)) return;
      if (err.status === 404) {
        replace(root, h('h1', null, 'Session'), empty(`No session ${ctx.id} in this project.`,
          h('p', null, 'Calls join a session when they run inside ', h('code', null, "kansoku.context(session_id='…')"), '. ', h('a', { href: '#/calls' }, 'Find calls →'))));
        ctx.setState('empty');
      } else {
        replace(root, h('h1', null, 'Session'), errorBox(err.message));
        ctx.setState('error');
      }
    }
  }

  load();
  return { update: () => load(), unmount: () => { token++; } };
}
