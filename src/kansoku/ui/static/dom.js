// The one way the UI builds DOM: elements, attributes and text nodes only.
// Data never passes through an HTML parser (no innerHTML & co.), so it cannot become markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : String(value));
    } else if (key === 'href') {
      el.setAttribute('href', safeHref(String(value)));
    } else if (key === 'value' && 'value' in el && el.tagName !== 'OPTION') {
      el.value = String(value);
    } else if (key === 'checked' || key === 'selected') {
      el[key] = Boolean(value);
    } else if (key.startsWith('on')) {
      throw new Error('event handlers must be functions');
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

// Only in-app hashes, same-origin paths and http(s) URLs may be link targets.
export function safeHref(url) {
  if (url.startsWith('#') || url.startsWith('/')) return url;
  return /^https?:\/\//i.test(url) ? url : '#';
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** h('a', {href: '#/calls', class: 'x'}, 'text', otherNode, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  if (tag === 'select' && attrs && attrs.value !== undefined && attrs.value !== null) el.value = String(attrs.value);
  return el;
}

/** The same for SVG elements (charts). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** An empty state: what is missing and what to do next. */
export function empty(title, ...hints) {
  return h('div', { class: 'empty', 'data-empty': '' }, h('p', { class: 'empty-title' }, title), ...hints);
}

export function errorBox(message) {
  return h('div', { class: 'error', 'data-error': '', role: 'alert' }, message);
}

export function code(text) {
  return h('code', null, text);
}
