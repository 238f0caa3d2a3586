// Auto Session Timeout: the web-client service that runs the wasm client.
// Only an adapter: the wasm (client-wasm/src/web/) listens, times, fetches,
// links the tabs and shows the notice through the `notification` service.
// Config (env.sessionTimeout = { base, wasmUrl } wins): <meta name="session-timeout-base"
// content="/session-timeout">, <meta name="session-timeout-wasm" content="/static/pkg/
// session_timeout_client_bg.wasm"> (explicit: Odoo's transpiler breaks import.meta.url).
import init, { SessionTimeout } from "./pkg/session_timeout_client.js";

const meta = (name) => document.querySelector(`meta[name="session-timeout-${name}"]`)?.content;

let started; // one client per page: a second start gets the same handle

export const sessionTimeoutService = {
  dependencies: ["notification"],
  // { stop(), state() }, or null if the client cannot run (the server still enforces).
  start: (env, { notification } = {}) => (started ??= boot(env?.sessionTimeout || {}, notification)),
};

async function boot(cfg, notification) {
  try {
    await init({ module_or_path: cfg.wasmUrl || meta("wasm") || "/static/pkg/session_timeout_client_bg.wasm" });
    const client = new SessionTimeout(cfg.base || meta("base") || "/session-timeout", notification);
    client.start();
    return { stop: () => client.stop(), state: () => client.state() };
  } catch (e) {
    console.error("session timeout client not started", e);
    return null;
  }
}

export function register(registry) {
  registry.category("services").add("session_timeout", sessionTimeoutService);
}
