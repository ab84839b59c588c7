// The collector's JSON query API, relative to this origin. A read key (when the collector has
// keys) lives in sessionStorage only and is sent as a bearer token; it is never shown.

const KEY = 'kansoku.readKey';

export class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param || null;
  }
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export function hasKey() {
  return Boolean(sessionStorage.getItem(KEY));
}

/** A query string from an object; arrays repeat the parameter, empty values are left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== null && v !== undefined && v !== '') q.append(name, String(v));
    }
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

export async function get(path, params) {
  const headers = { Accept: 'application/json' };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path + query(params), { headers, credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError(0, 'The collector cannot be reached. Is `kansoku up` (or `kansoku server`) running?');
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const e = body && body.error ? body.error : {};
    throw new ApiError(response.status, e.message || `HTTP ${response.status}`, e.param);
  }
  return body;
}

export const calls = (params) => get('/api/v1/calls', params);
export const stats = (params) => get('/api/v1/stats', params);
export const trace = (id) => get(`/api/v1/traces/${encodeURIComponent(id)}`);
export const session = (id) => get(`/api/v1/sessions/${encodeURIComponent(id)}`);
