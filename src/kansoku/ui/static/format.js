// Numbers, times and durations for people. Unknown values (null) show as an en dash.

const DASH = '–';
const known = (v) => v !== null && v !== undefined && !Number.isNaN(v);

export function ms(v) {
  if (!known(v)) return DASH;
  if (v === 0) return '0';
  if (v < 1) return `${v.toFixed(2)} ms`;
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60000) return `${(v / 1000).toFixed(v < 10000 ? 2 : 1)} s`;
  return `${(v / 60000).toFixed(1)} min`;
}

export function usd(v) {
  if (!known(v)) return DASH;
  if (v === 0) return '$0';
  if (Math.abs(v) < 0.01) return `$${v.toFixed(Math.min(10, 1 - Math.floor(Math.log10(Math.abs(v)))))}`;
  if (Math.abs(v) < 100) return `$${v.toFixed(2)}`;
  return `$${Math.round(v).toLocaleString('en-US')}`;
}

export function int(v) {
  if (!known(v)) return DASH;
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Math.round(v).toLocaleString('en-US');
}

export function pct(v) {
  if (!known(v)) return DASH;
  if (v === 0) return '0%';
  return `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%`;
}

const pad = (n) => String(n).padStart(2, '0');

/** Local date and time, with seconds. */
export function time(iso) {
  if (!iso) return DASH;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const today = new Date();
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === today.toDateString()) return clock;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock}`;
}

/** A short axis label for a bucket start (ms since epoch), precise enough for the bucket width. */
export function tick(msEpoch, widthS) {
  const d = new Date(msEpoch);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (widthS >= 86400) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (widthS >= 3600 * 3) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
  if (widthS < 60) return `${hm}:${pad(d.getSeconds())}`;
  return hm;
}

/** A value for <input type="datetime-local"> from an ISO time, and back to RFC 3339. */
export function toLocalInput(value) {
  const d = new Date(/^\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : value);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const UNIT_MS = { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8 };

/** A `since`/`until` value (duration back from now, unix seconds or RFC 3339) as ms since epoch. */
export function toEpochMs(value, now = Date.now()) {
  if (!value) return null;
  const m = /^(\d+)(ms|s|m|h|d|w)$/.exec(value.trim());
  if (m) return now - Number(m[1]) * UNIT_MS[m[2]];
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

export function truncate(text, n) {
  if (text === null || text === undefined) return '';
  const t = String(text).replace(/\s+/g, ' ').trim();
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

export function tokens(rec) {
  const parts = [];
  if (known(rec.input_tokens)) parts.push(int(rec.input_tokens));
  if (known(rec.output_tokens)) parts.push(int(rec.output_tokens));
  return parts.length === 2 ? `${parts[0]} → ${parts[1]}` : int(rec.total_tokens);
}
