// Shared helpers of the end-to-end tests: start the real `session-timeout
// demo` binary on a free port with a fresh SQLite file, drive headless
// Chromium (Debian's /usr/bin/chromium) with playwright-core, and ask the
// server what it recorded.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'target/release/session-timeout');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts the demo ERP with the sidecar; resolves once it listens. */
export async function startDemo({ timeout = 4, extraArgs = [] } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'st-e2e-'));
  const proc = spawn(BIN, ['demo', '--bind', '127.0.0.1:0', '--db', path.join(dir, 'demo.db'),
    '--timeout', String(timeout), '--www', path.join(ROOT, 'www'), ...extraArgs],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${out}\n${log}`)), 15000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/at (http:\/\/127\.0\.0\.1:\d+)\/web\/login/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => reject(new Error(`demo exited with ${code}:\n${log}`)));
  });
  return {
    url, dir, timeoutMs: timeout * 1000,
    log: () => log,
    async stop() { proc.kill('SIGTERM'); await new Promise((r) => proc.once('exit', r)); rmSync(dir, { recursive: true, force: true }); },
  };
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** A new page that records every dialog (the product promises none). */
export async function newPage(context, dialogs) {
  const page = await context.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  return page;
}

/** Logs in through the demo's login form, as a user would. */
export async function login(page, demo, user) {
  await page.goto(`${demo.url}/web/login`);
  await page.fill('#login', user);
  await page.fill('#password', user);
  await Promise.all([page.waitForNavigation(), page.click('#submit')]);
}

/** The session cookie of a browser context (HttpOnly: tests read it via CDP). */
export async function sessionCookie(context) {
  const c = (await context.cookies()).find((c) => c.name === 'session_id');
  return c && c.value;
}

/** Asks the sidecar about a cookie, as the page or the proxy would. */
export async function serverCheck(demo, cookie) {
  const r = await fetch(`${demo.url}/session-timeout/api/v1/check`, { headers: { cookie: `session_id=${cookie}` } });
  return r.json();
}

export async function serverAuth(demo, cookie) {
  const r = await fetch(`${demo.url}/session-timeout/api/v1/auth`, { headers: { cookie: `session_id=${cookie}` } });
  return r.status;
}

/** Heartbeats the server received so far (from its Prometheus metrics;
 * summed over `demo.metricsUrls` when several servers share the load). */
export async function heartbeatsAtServer(demo) {
  let n = 0;
  for (const url of demo.metricsUrls || [`${demo.url}/session-timeout/metrics`]) {
    const text = await (await fetch(url)).text();
    for (const m of text.matchAll(/^session_timeout_heartbeats_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  }
  return n;
}

/** Polls until `fn` is true; returns the time it took, or throws. */
export async function waitFor(fn, { timeoutMs, stepMs = 50, what = 'condition' }) {
  // The monotonic clock: a step of the wall clock (NTP on a shared machine) must not cut a wait short.
  const start = performance.now();
  for (;;) {
    if (await fn()) return Math.round(performance.now() - start);
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

export const onLoginPage = (page) => new URL(page.url()).pathname === '/web/login';
export const onBackOffice = (page) => new URL(page.url()).pathname.startsWith('/odoo');

/** Moves the mouse a little every `everyMs` for `forMs`: real input events. */
export async function keepMoving(page, forMs, everyMs = 300) {
  const end = Date.now() + forMs;
  let x = 10;
  while (Date.now() < end) {
    x = x === 10 ? 200 : 10;
    await page.mouse.move(x, 150, { steps: 2 });
    await sleep(everyMs);
  }
}

/** Makes the tab hidden or visible as far as the page can tell.
 * Headless Chromium shows every page as visible (one window each), so the
 * page's view of `document.visibilityState` is overridden and the standard
 * `visibilitychange` event fired: the same signal a real tab switch gives. */
export async function setHidden(page, hidden) {
  await page.evaluate((h) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

/**
 * Waits until the wasm service has settled in the page: it has its
 * configuration and the server's first answer, and nothing is in flight (a
 * running client then has a timer armed; the timer is cleared while a
 * request is out). Returning earlier let a test act while the first check was
 * still on its way, and that check could then see what the test did next.
 */
export async function clientReady(page) {
  await page.waitForFunction(() => {
    const h = window.__sessionTimeout;
    if (!h) return false;
    const s = h.state();
    return s.phase !== 'starting' && (s.phase !== 'running' || s.deadline > 0);
  }, null, { timeout: 10000 });
}
