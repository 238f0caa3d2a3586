// Fake Host for tests/web.rs, plus wrappers that count what is really
// attached to window/document and which timers are pending.
const ours = new WeakSet(); // functions made by fake hosts
const attached = new Set(); // "type|capture|id" of our attached listeners
const passive = new Map();
const ids = new WeakMap();
let nextId = 1;
const id = (f) => (ids.has(f) || ids.set(f, nextId++), ids.get(f));
const timers = new Set();
let hidden = false;

if (!globalThis.__stTestWrapped) {
  globalThis.__stTestWrapped = true;
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  const add = EventTarget.prototype.addEventListener;
  const remove = EventTarget.prototype.removeEventListener;
  EventTarget.prototype.addEventListener = function (type, f, opts) {
    if (ours.has(f)) {
      const capture = typeof opts === "object" ? !!opts.capture : !!opts;
      const key = `${type}|${capture}|${id(f)}`;
      attached.add(key);
      passive.set(key, typeof opts === "object" && opts.passive === true);
    }
    return add.call(this, type, f, opts);
  };
  EventTarget.prototype.removeEventListener = function (type, f, opts) {
    if (ours.has(f)) {
      const capture = typeof opts === "object" ? !!opts.capture : !!opts;
      attached.delete(`${type}|${capture}|${id(f)}`);
    }
    return remove.call(this, type, f, opts);
  };
  const setT = window.setTimeout.bind(window);
  const clearT = window.clearTimeout.bind(window);
  window.setTimeout = (f, ms, ...rest) => {
    if (!ours.has(f)) return setT(f, ms, ...rest);
    const handle = setT(() => { timers.delete(handle); f(); }, ms);
    timers.add(handle);
    return handle;
  };
  window.clearTimeout = (handle) => { timers.delete(handle); clearT(handle); };
}

let last = null; // the latest fake host: a test may stop what a failed one left running

// A fresh fake host; `dispatch(host, code, a, b)` is the client's export,
// which its listeners, timer and the tests' replies call.
export function fake_host(dispatch) {
  const fns = [];
  const fn = (code) => {
    if (!fns[code]) {
      fns[code] = code === 24
        ? (e) => e.target.closest?.("a[href]")?.pathname === "/web/session/logout" && dispatch(host, 24, 0, 0)
        : () => dispatch(host, code, 0, 0);
      ours.add(fns[code]);
    }
    return fns[code];
  };
  const host = {
    log: { requests: [], posts: [], navigations: 0, claim: -1 },
    get hidden() { return document.hidden; },
    listen(add, onDocument, kind, code, capture) {
      const target = onDocument ? document : window;
      if (add) target.addEventListener(kind, fn(code), { passive: true, capture });
      else target.removeEventListener(kind, fn(code), capture);
    },
    setTimer: (ms) => setTimeout(fn(23), ms),
    clearTimer: (handle) => clearTimeout(handle),
    request(kind, idle) { host.log.requests.push(`${kind}:${Math.round(idle / 1000)}`); },
    open() {},
    close() {},
    post(code, a, b) { host.log.posts.push(`${code},${a},${b}`); },
    claim() { return host.log.claim; },
    storeClaim(at) { host.log.claim = at; },
    navigate() { host.log.navigations++; },
  };
  last = host;
  return host;
}

export const last_host = () => last;
export const live_listeners = () => attached.size;
export const live_timers = () => timers.size;
export const all_passive = () => [...attached].every((k) => passive.get(k));
export const requests = (host) => host.log.requests.join(" ");
export const posts = (host) => host.log.posts.join(" ");
export const navigations = (host) => host.log.navigations;
export function set_hidden(h) { hidden = h; }
export function fire(on, kind) { (on === "w" ? window : document).dispatchEvent(new Event(kind)); }
export function click_link(href) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = "link";
  // Keep the test page where it is.
  a.addEventListener("click", (e) => e.preventDefault());
  document.body.appendChild(a);
  a.click();
  a.remove();
}
