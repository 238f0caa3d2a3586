// The page around tests/web.rs: counts what is really attached (listeners)
// and pending (timers), fakes `fetch` (requests are recorded and answered
// by the test), `document.hidden`, and Odoo's notification service.
const attached = new Map(); // function -> {type, passive}, for listeners of the kinds below
const KINDS = new Set(["mousemove", "mousedown", "keydown", "wheel", "scroll", "touchstart", "pointerdown",
  "visibilitychange", "pageshow", "focus", "click", "message", "storage"]);
const timers = new Set();
let hidden = false;
const requests = []; // "route:idle_s"
const pending = []; // resolvers of unanswered fetches, oldest first
const notices = []; // { message, buttons, open }

if (!globalThis.__stTestWrapped) {
  globalThis.__stTestWrapped = true;
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  const add = EventTarget.prototype.addEventListener;
  const remove = EventTarget.prototype.removeEventListener;
  EventTarget.prototype.addEventListener = function (type, f, opts) {
    if (KINDS.has(type) && typeof f === "function") {
      attached.set(f, { type, passive: typeof opts === "object" && opts.passive === true });
    }
    return add.call(this, type, f, opts);
  };
  EventTarget.prototype.removeEventListener = function (type, f, opts) {
    attached.delete(f);
    return remove.call(this, type, f, opts);
  };
  const setT = globalThis.setTimeout.bind(globalThis);
  const clearT = globalThis.clearTimeout.bind(globalThis);
  globalThis.setTimeout = (f, ms, ...rest) => {
    const handle = setT((...a) => { timers.delete(handle); f(...a); }, ms, ...rest);
    // Only the client's timers are long; the test runner's own are not counted.
    if (ms >= 1000) timers.add(handle);
    return handle;
  };
  globalThis.clearTimeout = (handle) => { timers.delete(handle); clearT(handle); };
  const realFetch = globalThis.fetch.bind(globalThis);
  globalThis.fetch = (url, init = {}) => {
    // The test runner fetches the wasm itself: only the client's requests are faked.
    if (!String(url).includes("/api/v1/")) return realFetch(url, init);
    const route = String(url).split("/api/v1/")[1];
    const idle = init.body ? JSON.parse(init.body).idle_ms : undefined;
    requests.push(idle === undefined ? route : `${route}:${Math.round(idle / 1000)}`);
    if (route === "logout") return Promise.resolve(new Response("{}", { status: 200 }));
    return new Promise((resolve) => pending.push(resolve));
  };
}

/** Odoo's notification service, as far as the client uses it. */
export function fake_notifications() {
  return {
    add(message, options) {
      const n = { message, buttons: options.buttons || [], sticky: options.sticky, open: true };
      notices.push(n);
      return () => { n.open = false; };
    },
  };
}

export const live_listeners = () => attached.size;
export const all_passive = () => [...attached.values()].every((l) => l.passive || l.type === "message" || l.type === "storage");
export const live_timers = () => timers.size;
export const requests_made = () => requests.join(" ");
export function forget_requests() { requests.length = 0; }
export const unanswered = () => pending.length;
/** Answers the oldest pending request with `status` and the JSON `body`. */
export function answer(status, body) {
  const resolve = pending.shift();
  if (resolve) resolve(new Response(body, { status, headers: { "Content-Type": "application/json" } }));
}
export function drop_pending() { pending.length = 0; }
export function set_hidden(h) { hidden = h; }
export function fire(on, kind) { (on === "w" ? window : document).dispatchEvent(new Event(kind)); }
export function click_link(href) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = "link";
  const stay = (e) => e.preventDefault(); // keep the test page where it is
  a.addEventListener("click", stay);
  document.body.appendChild(a);
  a.click();
  a.removeEventListener("click", stay);
  a.remove();
}
export const open_notices = () => notices.filter((n) => n.open).length;
export const last_notice = () => notices.at(-1)?.message || "";
/** Clicks the last notice's first button ("Stay signed in"). */
export function press_stay() { notices.at(-1)?.buttons[0]?.onClick(); }
/** Lets promise callbacks (the client's fetch handling) run. */
export const tick = () => new Promise((r) => setTimeout(r, 0));
export function field(obj, name) { return obj[name]; }
/** A new browser as far as the tabs' shared state goes (the heartbeat claim). */
export function clear_storage() { localStorage.clear(); }
/** A message from another tab of this browser. */
export function post_from_other_tab(text) {
  const c = new BroadcastChannel("session-timeout");
  c.postMessage(text);
  c.close();
}
