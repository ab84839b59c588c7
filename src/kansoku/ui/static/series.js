// Turning the stats API's rows into chart series on a full time grid (empty buckets included).

import { toEpochMs } from './format.js';

const STEPS_S = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800];

/** The time window of the filters, in ms since epoch. */
export function windowOf(filters, now = Date.now()) {
  const until = toEpochMs(filters.until, now) ?? now;
  const since = toEpochMs(filters.since, now) ?? until - 86400000;
  return { since, until: Math.max(until, since + 1000) };
}

/** A bucket width (seconds) giving at most ~60 buckets over the window. */
export function bucketFor({ since, until }) {
  const span = (until - since) / 1000;
  return STEPS_S.find((b) => span / b <= 60) || STEPS_S[STEPS_S.length - 1];
}

/** The bucket starts (ms) covering the window, aligned like the server (on the epoch). */
export function grid({ since, until }, widthS) {
  const w = widthS * 1000;
  const out = [];
  for (let t = Math.floor(since / w) * w; t < until && out.length < 2000; t += w) out.push(t);
  return out;
}

/** rows by bucket start (ms) → one value per grid time, via pick(row); missing buckets → empty. */
export function align(times, rows, pick, emptyValue = null) {
  const byTime = new Map(rows.map((r) => [Date.parse(r.bucket_start), r]));
  return times.map((t) => (byTime.has(t) ? pick(byTime.get(t)) : emptyValue));
}

/** The error types present in the rows, most frequent first. */
export function errorTypes(rows) {
  const total = new Map();
  for (const r of rows) for (const [k, v] of Object.entries(r.errors_by_type || {})) total.set(k, (total.get(k) || 0) + v);
  return [...total.entries()].sort((a, b) => b[1] - a[1]);
}
