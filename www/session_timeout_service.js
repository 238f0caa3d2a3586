// Auto Session Timeout: Odoo-style web-client service running the wasm client.
// Config (env.sessionTimeout = { base, wasmUrl } wins): <meta name="session-timeout-base"
// content="/session-timeout">, <meta name="session-timeout-wasm" content="/static/pkg/
// session_timeout_client_bg.wasm"> (explicit: Odoo's transpiler breaks import.meta.url).
// The wasm decides; this is its Host (client-wasm/src/web.rs): listeners, timer, fetch, JSON, tabs,
// logout URL. JS objects stay here: the wasm gets the host, borrowed, on each call, and numbers back.
import init, { start, stop, dispatch, debug } from "./pkg/session_timeout_client.js";

const KEY = "session-timeout.";
const meta = (name) => document.querySelector(`meta[name="session-timeout-${name}"]`)?.content;
const store = (f) => { try { return f(localStorage); } catch { return -1; } };

function host(base) {
  let channel, onStorage, expiredUrl, warned;
  let logoutUrl = "/web/session/logout";
  const send = (code, a, b) => dispatch(h, code, a || 0, b || 0);
  const deliver = (m) => Array.isArray(m) && send(...m);
  // One function per code, made once: removeEventListener must get what addEventListener got.
  const fns = [];
  const fn = (code) =>
    (fns[code] ??= code === 24 // only a click on a link to the logout URL
      ? (e) => e.target.closest?.("a[href]")?.pathname === new URL(logoutUrl, location.href).pathname && send(24)
      : () => send(code));
  const h = {
    get hidden() { return document.hidden; },
    listen: (add, onDocument, kind, code, capture) =>
      (onDocument ? document : window)[add ? "addEventListener" : "removeEventListener"](kind, fn(code), { passive: true, capture }),
    setTimer: (ms) => setTimeout(fn(23), ms),
    clearTimer: (t) => clearTimeout(t),
    // Answers dispatch(0 failed | 1 active | 2 exempt | 3 expired | 4 no session | 5 config, a, b)
    // (active: a = remaining ms, b = timeout s; config: a = timeout s, b = heartbeat interval ms).
    request(kind, idleMs) {
      const init = { credentials: "same-origin", cache: "no-store", keepalive: kind === 3 };
      if (kind > 1) {
        init.method = "POST";
        init.headers = { "Content-Type": "application/json" };
        init.body = kind === 2 ? `{"idle_ms":${Math.round(idleMs)}}` : "{}";
      }
      // A hung request must not stall the client: it fails and is retried.
      if (AbortSignal.timeout) init.signal = AbortSignal.timeout(20000);
      const sent = fetch(`${base}/api/v1/${["config", "check", "heartbeat", "logout"][kind]}`, init);
      if (kind === 3) return void sent.catch(() => {});
      sent
        .then(async (r) => {
          if (r.status === 401) return [4];
          const j = r.ok && (await r.json());
          if (kind === 0 && typeof j.timeout_s === "number") {
            logoutUrl = j.logout_url || logoutUrl;
            return [5, j.timeout_s, j.heartbeat_interval_ms ?? -1];
          }
          if (kind && j.state === "expired") expiredUrl = j.logout_url;
          return [kind && { active: 1, exempt: 2, expired: 3 }[j.state], j.remaining_ms, j.timeout_s];
        })
        .catch(() => [0])
        .then((m) => {
          // One warning per outage (the client retries with backoff; the server still enforces).
          if (m[0]) warned = 0;
          else if (!warned) warned = console.warn(`session timeout: no answer from ${base}; retrying`) ?? 1;
          send(...m);
        });
    },
    open() {
      try {
        channel = new BroadcastChannel("session-timeout");
        channel.onmessage = (e) => deliver(e.data);
      } catch {
        onStorage = (e) => e.key === KEY + "msg" && e.newValue && deliver(JSON.parse(e.newValue));
        addEventListener("storage", onStorage);
      }
    },
    post(code, a, b) {
      if (channel) channel.postMessage([code, a, b]);
      // Storage events fire on change only: the 4th field makes it new.
      else store((s) => s.setItem(KEY + "msg", JSON.stringify([code, a, b, Math.random()])));
    },
    close() {
      channel?.close();
      if (onStorage) removeEventListener("storage", onStorage);
      channel = onStorage = null;
    },
    claim: () => store((s) => +s.getItem(KEY + "heartbeat") || -1),
    storeClaim: (at) => store((s) => s.setItem(KEY + "heartbeat", at)),
    navigate: () => location.replace(expiredUrl || logoutUrl),
  };
  return h;
}

let started; // the wasm runs one client per page: a second start gets the same handle

export const sessionTimeoutService = {
  dependencies: [],
  // { stop(), state() }, or null if the client cannot run (the server still enforces).
  start: (env) => (started ??= boot(env?.sessionTimeout || {})),
};

async function boot(cfg) {
  try {
    await init({ module_or_path: cfg.wasmUrl || meta("wasm") || "/static/pkg/session_timeout_client_bg.wasm" });
    const h = host(cfg.base || meta("base") || "/session-timeout");
    start(h);
    return {
      stop: () => stop(h),
      state: () => ({
        phase: ["stopped", "starting", "running", "exempt", "no_session", "ended"][debug(0) + 1],
        listeners: debug(1),
        deadline: debug(2),
      }),
    };
  } catch (e) {
    console.error("session timeout client not started", e);
    return null;
  }
}

export function register(registry) {
  registry.category("services").add("session_timeout", sessionTimeoutService);
}
