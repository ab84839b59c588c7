// Rendering an LLM call's messages as a conversation, and its details as a definition list.

import { h } from './dom.js';
import * as fmt from './format.js';

function partText(part) {
  if (part === null || part === undefined) return '';
  if (typeof part === 'string') return part;
  if (typeof part.text === 'string') return part.text;
  if (part.type === 'image_url' || part.type === 'image') return '[image]';
  return JSON.stringify(part);
}

function toolCalls(message) {
  const calls = Array.isArray(message.tool_calls) ? message.tool_calls : [];
  return calls.map((c) => {
    const fn = c.function || c;
    const args = typeof fn.arguments === 'string' ? fn.arguments : JSON.stringify(fn.arguments ?? {});
    return h('pre', { class: 'tool-call' }, `${fn.name || 'tool'}(${args})`);
  });
}

/** One message: role, content (text, parts or tool calls); content is always plain text. */
export function message(m, extra) {
  const role = typeof m.role === 'string' ? m.role : 'unknown';
  const content = Array.isArray(m.content) ? m.content.map(partText).join('\n') : m.content === null || m.content === undefined ? '' : String(m.content);
  return h('div', { class: `message role-${role.replace(/[^a-z_-]/gi, '')}`, 'data-role': role },
    h('div', { class: 'message-role' }, role, m.name ? ` (${m.name})` : '', m.tool_call_id ? ` → ${m.tool_call_id}` : '', extra || null),
    content ? h('div', { class: 'message-body' }, content) : null,
    toolCalls(m),
    !content && !toolCalls(m).length ? h('div', { class: 'message-body dim' }, '(empty)') : null);
}

/** The messages of a call, input then output; falls back to input_text / output_text. */
export function conversation(c, { skip = 0 } = {}) {
  const input = Array.isArray(c.input_messages) ? c.input_messages
    : c.input_text ? [{ role: 'user', content: c.input_text }] : [];
  const output = Array.isArray(c.output_messages) ? c.output_messages
    : c.output_text ? [{ role: 'assistant', content: c.output_text }] : [];
  const shown = input.slice(skip);
  return h('div', { class: 'conversation' },
    skip > 0 ? h('p', { class: 'dim earlier' }, `${skip} earlier message${skip === 1 ? '' : 's'} (shown in previous turns)`) : null,
    shown.map((m) => message(m)),
    output.map((m) => message(m, c.finish_reasons && c.finish_reasons.length ? h('small', { class: 'dim' }, ` · ${c.finish_reasons.join(', ')}`) : null)),
    c.status === 'error' && !output.length ? h('div', { class: 'message role-error', 'data-role': 'error' },
      h('div', { class: 'message-role' }, c.error_type || 'error'), h('div', { class: 'message-body' }, c.error_message || 'The call failed.')) : null);
}

function dl(pairs) {
  const items = pairs.filter(([, v]) => v !== null && v !== undefined && v !== '');
  return h('dl', { class: 'kv' }, items.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

function value(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** The numbers of an LLM call: tokens, cost, latency, TTFT, model, parameters, error. */
export function callFacts(c) {
  const tok = (v) => (v === null || v === undefined ? null : fmt.int(v));
  const params = c.parameters && Object.keys(c.parameters).length ? c.parameters : null;
  return h('div', { class: 'facts' },
    dl([
      ['Model', c.model && c.request_model && c.model !== c.request_model ? `${c.model} (asked for ${c.request_model})` : c.model || c.request_model],
      ['Provider', c.provider ? `${c.provider}${c.operation ? ` · ${c.operation}` : ''}` : null],
      ['Latency', fmt.ms(c.latency_ms)],
      ['Time to first token', c.ttft_ms === null || c.ttft_ms === undefined ? null : fmt.ms(c.ttft_ms)],
      ['Input tokens', tok(c.input_tokens)],
      ['Cached input tokens', tok(c.cached_input_tokens)],
      ['Output tokens', tok(c.output_tokens)],
      ['Reasoning tokens', tok(c.reasoning_tokens)],
      ['Total tokens', c.total_tokens === null || c.total_tokens === undefined ? null : `${fmt.int(c.total_tokens)}${c.usage_estimated ? ' (estimated)' : ''}`],
      ['Cost', c.cost_usd === null || c.cost_usd === undefined ? null : fmt.usd(c.cost_usd)],
      ['Temperature', c.temperature === null || c.temperature === undefined ? null : String(c.temperature)],
      ['Streamed', c.stream ? 'yes' : null],
      ['Finish reasons', c.finish_reasons && c.finish_reasons.length ? c.finish_reasons.join(', ') : null],
      ['Response id', c.response_id],
      ['Status', `${c.status}${c.status_code ? ` (${c.status_code})` : ''}`],
      ['Error', c.error_type ? `${c.error_type}${c.error_message ? `: ${c.error_message}` : ''}` : c.error_message],
    ]),
    params ? h('h4', null, 'Parameters') : null,
    params ? dl(Object.entries(params).map(([k, v]) => [k, value(v)])) : null);
}

/** A record's other fields and its attributes, as key/value lists. */
export function spanFacts(c, { skipGateway = false } = {}) {
  const tags = c.tags && Object.keys(c.tags).length ? Object.entries(c.tags).map(([k, v]) => `${k}:${v}`).join(' ') : null;
  const attrs = Object.entries(c.attributes || {}).filter(([k]) => !(skipGateway && k.startsWith('kansoku.gateway.')));
  return h('div', { class: 'facts' },
    dl([
      ['Span', `${c.name} (${c.kind})`], ['Started', c.timestamp], ['Duration', fmt.ms(c.latency_ms)],
      ['Service', c.service], ['Environment', c.environment], ['Region', c.region], ['User', c.user_id],
      ['Session', c.context_id], ['Prompt', c.prompt_id ? `${c.prompt_id}${c.prompt_version ? `@${c.prompt_version}` : ''}` : null],
      ['Tags', tags], ['Span id', c.span_id], ['Parent span id', c.parent_span_id],
    ]),
    attrs.length ? h('h4', null, 'Attributes') : null,
    attrs.length ? dl(attrs.map(([k, v]) => [k, value(v)])) : null,
    c.events && c.events.length ? h('h4', null, 'Events') : null,
    c.events && c.events.length ? h('ul', { class: 'events' }, c.events.map((e) => h('li', null, `${e.name} ${Object.keys(e.attributes || {}).length ? JSON.stringify(e.attributes) : ''}`))) : null);
}

/** The kansoku.gateway.* attributes of a span (what the gateway decided), or null. */
export function gatewayFacts(c) {
  const attrs = Object.entries(c.attributes || {}).filter(([k]) => k.startsWith('kansoku.gateway.'));
  if (!attrs.length) return null;
  return h('div', { class: 'facts gateway' }, h('h4', null, 'Gateway'), dl(attrs.map(([k, v]) => [k.slice('kansoku.gateway.'.length), value(v)])));
}
