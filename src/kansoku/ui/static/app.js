// The shell: hash routing (#/page/id?query), the nav, the page root's state, and the read-key
// prompt. Each page is one module with mount(root, params, ctx) → {update?, unmount?}.

import * as api from './api.js';
import { empty, errorBox, h, replace } from './dom.js';

const PAGES = {
  overview: () => import('./overview.js'),
  calls: () => import('./calls.js'),
  trace: () => import('./trace.js'),
  session: () => import('./session.js'),
  gateway: () => import('./gateway.js'),
};
const NAV_OF = { overview: 'overview', calls: 'calls', trace: 'calls', session: 'calls', gateway: 'gateway' };

const root = document.getElementById('page');
let current = null; // {key, name, instance}
let generation = 0;

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  const [name, ...rest] = path.split('/');
  const id = rest.length ? decodeURIComponent(rest.join('/')) : null;
  return { name: PAGES[name] ? name : path === '' ? 'overview' : null, id, params };
}

/** The hash of a page: href('calls', null, {model: 'x'}) → '#/calls?model=x'. */
export function href(name, id, params) {
  const path = id ? `#/${name}/${encodeURIComponent(id)}` : `#/${name}`;
  const q = params instanceof URLSearchParams ? params.toString() : api.query(params || {}).slice(1);
  return q ? `${path}?${q}` : path;
}

export function go(name, id, params, { replace: rep = false } = {}) {
  const target = href(name, id, params);
  if (target === location.hash) return;
  if (rep) history.replaceState(null, '', target);
  else location.hash = target;
  if (rep) route();
}

function setState(state) {
  root.setAttribute('data-state', state);
  root.setAttribute('aria-busy', state === 'loading' ? 'true' : 'false');
}

function keyForm(err, retry) {
  const input = h('input', { name: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'key-help' });
  const form = h('form', { id: 'key-form', class: 'key-form' },
    h('h1', null, 'A read key is needed'),
    h('p', { id: 'key-help' },
      'This collector has API keys. Create one for your project with ',
      h('code', null, 'kansoku keys create --project P --scope read'),
      ' and paste it here. It is kept in this tab only (sessionStorage) and sent as a bearer token.'),
    err.status === 403 || api.hasKey() ? errorBox(err.message) : null,
    h('label', { class: 'field' }, h('span', null, 'Read key'), input),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Use this key')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    input.value = '';
    if (!key) return;
    api.setKey(key);
    retry();
  });
  return form;
}

/** What a page shows when a load fails; a 401/403 asks for a read key instead. */
export function showError(err) {
  if (err && (err.status === 401 || err.status === 403)) {
    if (current && current.instance && current.instance.unmount) current.instance.unmount();
    current = null;
    root.setAttribute('data-page', parseHash().name || 'overview');
    replace(root, keyForm(err, route));
    setState('error');
    root.querySelector('input[name="key"]').focus();
    return true;
  }
  return false;
}

const ctx = { go, href, setState, showError };

function notFound() {
  setState('empty');
  replace(root, empty('There is no such page.', h('p', null, h('a', { href: '#/overview' }, 'Go to the overview'))));
}

export async function route() {
  const { name, id, params } = parseHash();
  for (const a of document.querySelectorAll('a[data-nav]')) {
    if (a.getAttribute('data-nav') === NAV_OF[name]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const key = `${name}/${id || ''}`;
  if (current && current.key === key && current.instance.update) {
    current.instance.update(params);
    return;
  }
  const mine = ++generation;
  if (current && current.instance && current.instance.unmount) current.instance.unmount();
  current = null;
  root.setAttribute('data-page', name || 'overview');
  setState('loading');
  if (!name) {
    notFound();
    return;
  }
  let mod;
  try {
    mod = await PAGES[name]();
  } catch (err) {
    replace(root, errorBox(`The page could not be loaded: ${err.message}`));
    setState('error');
    return;
  }
  if (mine !== generation) return;
  replace(root);
  const instance = mod.mount(root, params, { ...ctx, id, isCurrent: () => mine === generation }) || {};
  current = { key, name, instance };
  document.title = `${mod.title ? mod.title(id) : name} · kansoku`;
}

window.addEventListener('hashchange', () => route());
route();
