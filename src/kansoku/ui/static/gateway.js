// The gateway page: not built yet; says where the gateway is documented and how to use it.

import { empty, h, replace } from './dom.js';

export const title = () => 'Gateway';

export function mount(root, params, ctx) {
  replace(root,
    h('div', { class: 'page-head' }, h('h1', null, 'Gateway')),
    empty('The gateway page is not here yet.',
      h('p', null, 'The gateway is an OpenAI-compatible proxy with retries, fallbacks, limits and budgets. ',
        'Its setup is in the README, section “The gateway” (', h('code', null, 'kansoku gateway --config gateway.yaml'),
        ', or ', h('code', null, 'kansoku up'), ' which runs it on port 4000).'),
      h('p', null, 'Point the OpenAI SDK at it: ', h('code', null, "OpenAI(base_url='http://127.0.0.1:4000/v1')"), '.'),
      h('p', null, 'Every request it serves is recorded as an LLM call (service ', h('code', null, 'kansoku-gateway'),
        '), with one child span per upstream attempt: open a call from the ', h('a', { href: '#/calls' }, 'calls explorer'),
        ' to see its attempts in the trace.')));
  ctx.setState('empty');
  return {};
}
