// DOM helpers of the dashboard pages. Every string from the network becomes a text node or an
// attribute value set with setAttribute: nothing is ever parsed as HTML (no innerHTML with data).

/** @typedef {Node | string | number | null | undefined | false} Child */

/**
 * An element with attributes and children; strings and numbers become text nodes.
 * @param {string} tag
 * @param {Record<string, string> | null} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) el.setAttribute(k, v);
  append(el, children);
  return el;
}

/**
 * @param {HTMLElement} el
 * @param {(Child | Child[])[]} children
 */
function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/**
 * A horizontal bar filled to `fraction` (0..1), with its label as text.
 * @param {number} fraction
 * @param {string} label
 * @param {string} [kind]
 */
export function bar(fraction, label, kind = '') {
  const fill = h('div', { class: `bar-fill ${kind}` });
  // CSSOM, not a style attribute: the Content-Security-Policy allows no inline styles.
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  return h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(fraction * 100)) }, fill, h('span', { class: 'bar-label' }, label));
}

/**
 * A table from a header row and body rows of cells.
 * @param {string[]} head
 * @param {(Child | Child[])[][]} rows
 * @param {string} [id]
 */
export function table(head, rows, id) {
  return h(
    'table',
    id ? { id } : null,
    h('thead', null, h('tr', null, head.map((x) => h('th', null, x)))),
    h('tbody', null, rows.map((r) => h('tr', null, r.map((c) => h('td', null, c))))),
  );
}

/** @param {number} n */
export function bytes(n) {
  if (!Number.isFinite(n)) return '-';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** @param {number} ms */
export function duration(ms) {
  if (!Number.isFinite(ms)) return '-';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** @param {number} ms */
export function time(ms) {
  return ms > 0 ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '-';
}

/** @param {string} hash */
export function short(hash) {
  return hash ? `${hash.slice(0, 12)}…` : '-';
}
