// Client half of `make bench` (run by bench/bench.py from tests/e2e, where
// playwright-core is installed). Prints one JSON object on stdout with the
// figures and a Markdown section for BENCHMARKS.md; progress goes to stderr.
//
// 4. Size: the wasm and its JS glue, raw and gzip -9, beside react-idle-timer
//    5.7.3's dist/index.esm.mjs fetched with `npm pack` now.
// 5. Cost in Chromium: time to start the service (cold page, module import +
//    wasm instantiation + start), and the added cost per input event
//    (synthetic mouse moves with the service running vs stopped, interleaved).
// 6. Network economy: requests per active minute and per idle minute with 1
//    and 5 tabs, counted in the browser, against a demo with a 60 s timeout.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDemo, launch, login, clientReady, sleep } from '../tests/e2e/harness.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (...a) => console.error('[client-bench]', ...a);
const gz = (file) => Number(execFileSync('sh', ['-c', `gzip -9 -c "${file}" | wc -c`]).toString().trim());
const raw = (file) => readFileSync(file).length;
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const ACTIVE_MS = Number(process.env.BENCH_ACTIVE_MS || 60000);
const IDLE_MS = Number(process.env.BENCH_IDLE_MS || 60000);

function sizes() {
  const files = ['www/pkg/session_timeout_client_bg.wasm', 'www/pkg/session_timeout_client.js', 'www/session_timeout_service.js'];
  const rows = files.map((f) => ({ file: f, raw: raw(path.join(ROOT, f)), gzip: gz(path.join(ROOT, f)) }));
  const dir = mkdtempSync(path.join(tmpdir(), 'st-ridle-'));
  let ref = null;
  try {
    execFileSync('npm', ['pack', 'react-idle-timer@5.7.3', '--silent'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
    const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    execFileSync('tar', ['xzf', tgz, 'package/dist/index.esm.mjs'], { cwd: dir });
    const f = path.join(dir, 'package/dist/index.esm.mjs');
    ref = { file: 'react-idle-timer 5.7.3 dist/index.esm.mjs', raw: raw(f), gzip: gz(f) };
  } catch (e) {
    log('npm pack react-idle-timer failed:', e.message);
  } finally { rmSync(dir, { recursive: true, force: true }); }
  return { rows, total: { raw: rows.reduce((a, r) => a + r.raw, 0), gzip: rows.reduce((a, r) => a + r.gzip, 0) }, ref };
}

async function costs(browser) {
  const demo = await startDemo({ timeout: 300 });
  try {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await login(page, demo, 'admin');
    await clientReady(page);
    // Start-up: on the login page (no client loaded), import and start the
    // service as the web client would; fresh page each time.
    const starts = [];
    for (let i = 0; i < 7; i++) {
      const p = await ctx.newPage();
      await p.goto(`${demo.url}/web/login`);
      starts.push(await p.evaluate(async () => {
        const t0 = performance.now();
        const { sessionTimeoutService } = await import('/static/session_timeout_service.js');
        const svc = await sessionTimeoutService.start({ sessionTimeout: { base: '/session-timeout', wasmUrl: '/static/pkg/session_timeout_client_bg.wasm' } });
        const t1 = performance.now();
        svc.stop();
        return t1 - t0;
      }));
      await p.close();
    }
    // Per-event cost: N synthetic mouse moves, service running vs stopped.
    const N = 200000;
    const burstIn = (p) => p.evaluate((n) => {
      const t = document.body;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) t.dispatchEvent(new MouseEvent('mousemove', { bubbles: true, clientX: i & 255, clientY: 7 }));
      return performance.now() - t0;
    }, N);
    const burst = () => burstIn(page);
    await burst(); // warm-up
    const withSvc = [];
    const without = [];
    // Interleaved: the running client, then a page whose client is stopped.
    const bare = await ctx.newPage();
    await bare.goto(`${demo.url}/odoo`);
    await clientReady(bare);
    await bare.evaluate(() => window.__sessionTimeout.stop());
    const burstBare = () => burstIn(bare);
    await burstBare();
    for (let r = 0; r < 7; r++) {
      withSvc.push(await burst());
      without.push(await burstBare());
    }
    const listeners = await bare.evaluate(() => window.__sessionTimeout.state().listeners);
    await ctx.close();
    return {
      start_ms: median(starts),
      per_event_with_ns: median(withSvc) / N * 1e6,
      per_event_without_ns: median(without) / N * 1e6,
      per_event_added_ns: (median(withSvc) - median(without)) / N * 1e6,
      listeners_after_stop: listeners,
    };
  } finally { await demo.stop(); }
}

async function economy(browser, tabs) {
  const demo = await startDemo({ timeout: 60 });
  try {
    const ctx = await browser.newContext();
    const counts = {
      active: { heartbeat: 0, check: 0, other: 0 },
      // late: heartbeats of the idle minute that report input of the active
      // one (their idle_ms reaches back before the idle minute began).
      idle: { heartbeat: 0, late: 0, check: 0, other: 0 },
    };
    let phase = null;
    let idleStart = Infinity;
    ctx.on('request', (r) => {
      const m = r.url().match(/\/session-timeout\/api\/v1\/(\w+)/);
      if (!m || !phase) return;
      const k = m[1] === 'heartbeat' || m[1] === 'check' ? m[1] : 'other';
      counts[phase][k] += 1;
      if (k === 'heartbeat' && phase === 'idle') {
        const reported = Date.now() - JSON.parse(r.postData() || '{}').idle_ms;
        if (reported < idleStart + 50) counts.idle.late += 1;
      }
    });
    const pages = [];
    const first = await ctx.newPage();
    await login(first, demo, 'admin');
    pages.push(first);
    for (let i = 1; i < tabs; i++) { const p = await ctx.newPage(); await p.goto(`${demo.url}/odoo`); pages.push(p); }
    for (const p of pages) await clientReady(p);
    await sleep(1000);
    phase = 'active';
    log(`${tabs} tab(s): one active minute`);
    const end = Date.now() + ACTIVE_MS;
    let i = 0;
    while (Date.now() < end) {
      // The user works in one tab after another, moving the mouse.
      const p = pages[Math.floor(i / 20) % tabs];
      await p.mouse.move(10 + (i % 2) * 200, 100);
      i += 1;
      await sleep(250);
    }
    idleStart = Date.now();
    phase = 'idle';
    log(`${tabs} tab(s): idle until after the deadline`);
    await sleep(IDLE_MS + 3000);
    const loggedOut = pages.filter((p) => new URL(p.url()).pathname === '/web/login').length;
    await ctx.close();
    return { tabs, ...counts, idle_seconds: (Date.now() - idleStart) / 1000, tabs_on_login_page: loggedOut };
  } finally { await demo.stop(); }
}

const browser = await launch();
try {
  const size = sizes();
  log('sizes done');
  const cost = await costs(browser);
  log('costs done', JSON.stringify(cost));
  const net = [];
  if (process.env.BENCH_SKIP_ECONOMY !== '1') {
    for (const tabs of [1, 5]) net.push(await economy(browser, tabs));
  }
  const md = [];
  md.push('## Client\n');
  md.push('### Size (make size; react-idle-timer fetched with `npm pack` in the same run)\n');
  md.push('| file | raw bytes | gzip -9 bytes |');
  md.push('|---|---:|---:|');
  for (const r of size.rows) md.push(`| ${r.file} | ${r.raw.toLocaleString('en')} | ${r.gzip.toLocaleString('en')} |`);
  md.push(`| **total (wasm + glue)** | **${size.total.raw.toLocaleString('en')}** | **${size.total.gzip.toLocaleString('en')}** |`);
  if (size.ref) {
    md.push(`| ${size.ref.file} | ${size.ref.raw.toLocaleString('en')} | ${size.ref.gzip.toLocaleString('en')} |`);
    md.push(`\nOur bundle is **${(size.total.gzip / size.ref.gzip).toFixed(2)}x** react-idle-timer's ESM bundle (gzip -9); react-idle-timer also needs React, and does not talk to a server.\n`);
  }
  md.push('### Cost in Chromium (headless, Debian chromium)\n');
  md.push('| measure | value |');
  md.push('|---|---:|');
  md.push(`| start of the service on a fresh page (module import, wasm instantiation, start; median of 7) | ${cost.start_ms.toFixed(1)} ms |`);
  md.push(`| mousemove dispatch, service running | ${cost.per_event_with_ns.toFixed(0)} ns/event |`);
  md.push(`| mousemove dispatch, service stopped (baseline, same run, interleaved) | ${cost.per_event_without_ns.toFixed(0)} ns/event |`);
  md.push(`| **added cost per input event** | **${cost.per_event_added_ns.toFixed(0)} ns** |`);
  md.push(`| listeners left after stop() | ${cost.listeners_after_stop} |`);
  md.push('');
  if (net.length) {
    md.push(`### Network economy (demo with a 60 s timeout, so a 15 s heartbeat interval; ${ACTIVE_MS / 1000} s of mouse activity moving between the tabs, then idle past the deadline)\n`);
    md.push('| tabs | heartbeats, active minute | checks, active minute | heartbeats, idle minute | of which report input of the active minute | checks, idle minute | other API calls (config at start excluded) | tabs on the login page at the end |');
    md.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const n of net) {
      md.push(`| ${n.tabs} | ${n.active.heartbeat} | ${n.active.check} | ${n.idle.heartbeat} | ${n.idle.late} | ${n.idle.check} | ${n.active.other + n.idle.other} | ${n.tabs_on_login_page}/${n.tabs} |`);
    }
    md.push('');
  }
  console.log(JSON.stringify({ size, cost, net, markdown: md.join('\n') }));
} finally { await browser.close(); }
