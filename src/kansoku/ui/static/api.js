// The collector's JSON query API, relative to this origin. A read key (when the collector has
// keys) lives in sessionStorage only and is sent as a bearer token; it is never shown.

const KEY = 'kansoku.readKey';

export class ApiError extends Error {
  constructor(status, message, param, code) {
    super(message);
    this.status = status;
    this.param = param || null;
    this.code = code || null;
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

/**
 * One JSON request: {status, body}. A status in `accept` is an answer too (e.g. a replay's 502
 * carries its outcome); any other HTTP error throws an ApiError with the API's message and code.
 */
export async function request(method, path, { params, body, headers: extra, accept = [] } = {}) {
  const headers = { Accept: 'application/json', ...(extra || {}) };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path + query(params), init);
  } catch (err) {
    throw new ApiError(0, 'The collector cannot be reached. Is `kansoku up` (or `kansoku server`) running?');
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (err) {
    answer = null;
  }
  if (!response.ok && !accept.includes(response.status)) {
    const e = answer && answer.error ? answer.error : {};
    throw new ApiError(response.status, e.message || `HTTP ${response.status}`, e.param, e.code);
  }
  return { status: response.status, body: answer };
}

export async function get(path, params) {
  return (await request('GET', path, { params })).body;
}

export const calls = (params) => get('/api/v1/calls', params);
export const stats = (params) => get('/api/v1/stats', params);
export const histogram = (params) => get('/api/v1/histogram', params);
export const trace = (id) => get(`/api/v1/traces/${encodeURIComponent(id)}`);
export const session = (id) => get(`/api/v1/sessions/${encodeURIComponent(id)}`);
export const gatewayStatus = () => get('/api/v1/gateway/status');
/** Replay a dead letter: {status, body}; 200 answered, 502 failed again (both carry the outcome). */
export const replayLetter = (id, adminKey) => request('POST', `/api/v1/gateway/dead-letters/${encodeURIComponent(id)}/replay`,
  { headers: adminKey ? { 'X-Kansoku-Admin-Key': adminKey } : {}, accept: [502] });
