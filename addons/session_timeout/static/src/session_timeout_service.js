/** @odoo-module */
// Auto Session Timeout: the back office's `session_timeout` service.
//
// It only loads and starts the browser client. The client (the wasm and its
// wasm-bindgen glue, with the host of www/session_timeout_service.js) is not
// part of Odoo's asset bundle: generated ES modules do not survive Odoo's
// transpiler (17 leaves them raw, 18 misses exports on one line), so they stay
// under static/lib/ and are loaded at run time with a native import(). The
// folder name carries the bundle's content hash, written by `make addon`, so
// that Odoo's one-week cache of /static/ never serves an old client after an
// upgrade. Starting returns at once: the back office never waits for the
// client, and works the same if it cannot load (the sidecar and the proxy
// still enforce the timeout).
import { registry } from "@web/core/registry";

const LIB = "/session_timeout/static/lib/@@BUNDLE@@/";
// Where the reverse proxy routes the sidecar, on the ERP's own origin.
const BASE = "/session-timeout";

export const sessionTimeoutService = {
    // The web client's notifications carry the opt-in notice before a logout.
    dependencies: ["notification"],
    start(env, { notification }) {
        const ready = import(LIB + "session_timeout_service.js")
            .then((client) =>
                client.sessionTimeoutService.start(
                    { sessionTimeout: { base: BASE, wasmUrl: LIB + "pkg/session_timeout_client_bg.wasm" } },
                    { notification }
                )
            )
            .catch((e) => {
                console.warn("session timeout: the browser client could not be loaded", e);
                return null;
            });
        // `ready` resolves to the client's handle ({ stop(), state() }) or null.
        return { ready };
    },
};

registry.category("services").add("session_timeout", sessionTimeoutService);
