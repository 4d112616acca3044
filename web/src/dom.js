// h(tag, props, ...children): the one way this client builds DOM. Text goes
// in as text nodes (textContent / append(string)), never as HTML, so message
// content cannot inject markup.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (typeof value === 'boolean') el.toggleAttribute(key, value);
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child); // strings become text nodes
  }
}

// Replaces all children of `el`.
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// A stable colour class (hue-0 .. hue-7) for a name.
export function hueClass(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hue-${hash % 8}`;
}

export function avatar(name, extra = '') {
  const initial = [...(name || '?')][0].toUpperCase();
  return h('span', { class: `avatar ${hueClass(name || '?')} ${extra}`.trim(), 'aria-hidden': 'true' }, initial);
}
