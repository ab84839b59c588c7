// The auto-refresh toggle of the live pages (overview, gateway): a pressed/unpressed button that
// reloads the page's data every `ms` while on; the choice is kept per page in this tab.

import { h } from './dom.js';

/** autoRefresh(() => load(true), {ms, key}) → {button, start(), stop()}; start() honours the kept choice. */
export function autoRefresh(tick, { ms, key }) {
  const button = h('button', { type: 'button', class: 'toggle', 'aria-pressed': 'false', id: 'auto-refresh' }, 'Auto-refresh');
  let timer = null;
  const set = (on) => {
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
    sessionStorage.setItem(key, on ? '1' : '');
    clearInterval(timer);
    timer = on ? setInterval(() => { if (!document.hidden) tick(); }, ms) : null;
  };
  button.addEventListener('click', () => set(button.getAttribute('aria-pressed') !== 'true'));
  return {
    button,
    start() { if (sessionStorage.getItem(key)) set(true); },
    stop() { clearInterval(timer); timer = null; },
  };
}
