// Helpers of the reverse-proxy tests: start the ERP stand-in (`session-timeout
// demo --no-enforce`, so the proxy is its only gate), the sidecar (`session-
// timeout serve`) and real nginx or Caddy configured with the files shipped in
// deploy/, on loopback ports; and a plain HTTP client with a cookie jar that
// behaves like a browser with scripts off.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, startDemo, sleep, waitFor } from './harness.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const NGINX_SITE = path.join(ROOT, 'deploy/nginx/session-timeout.conf');
export const CADDYFILE = path.join(ROOT, 'deploy/caddy/Caddyfile');
/** What the sidecar sends an ended session to (its default --logout-url). */
export const LOGOUT_URL = '/web/session/logout?redirect=%2Fweb%2Flogin';

// Debian puts nginx in /usr/sbin, which is not on every user's PATH.
const which = (cmd) => ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']
  .map((d) => path.join(d, cmd)).find((p) => { try { accessSync(p, constants.X_OK); return true; } catch { return false; } }) || cmd;

/** A port nobody listens on right now (the sidecar and nginx need one up front). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

/** Spawns a process whose output is kept for failure messages. */
export function spawnLogged(name, cmd, args, opts = {}) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let log = '';
  const keep = (d) => { log = (log + d).slice(-20000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  // A failure to spawn at all (missing binary) also ends up in `exited`.
  proc.once('error', (e) => { keep(`\n${name}: ${e.message}\n`); });
  return {
    proc, exited,
    log: () => `--- ${name} ---\n${log}`,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** Resolves once `ready()` is true; rejects early if the process exits. */
export async function untilReady(p, ready, what) {
  let exited = null;
  p.exited.then((r) => { exited = r; });
  await waitFor(async () => {
    if (exited) throw new Error(`${what} exited (${JSON.stringify(exited)}) before it was ready\n${p.log()}`);
    try { return await ready(); } catch { return false; }
  }, { timeoutMs: 15000, stepMs: 50, what });
}

/** `session-timeout serve` on a fixed port, asking the ERP who owns a session. */
export async function startSidecar({ port, erpUrl, timeout, db }) {
  const url = `http://127.0.0.1:${port}`;
  const p = spawnLogged('sidecar', BIN, ['serve', '--bind', `127.0.0.1:${port}`, '--db', db,
    '--timeout', String(timeout), '--session-info-url', `${erpUrl}/web/session/get_session_info`],
  { env: { ...process.env, RUST_LOG: 'info' } });
  await untilReady(p, async () => (await fetch(`${url}/session-timeout/healthz`)).status === 200, 'the sidecar');
  return { url, port, log: p.log, stop: p.stop };
}

/** The shipped nginx site with the test's addresses, and nothing else changed.
 * `onError` flips the documented sidecar-down switch. */
export function nginxSite({ listenPort, erpPort, sidecarPort, onError = 'refuse', gate = true }) {
  let site = readFileSync(NGINX_SITE, 'utf8');
  const swap = (from, to) => {
    const n = site.split(from).length - 1;
    if (n !== 1) throw new Error(`deploy/nginx: expected "${from}" once, found it ${n} times; update the test with the config`);
    site = site.replace(from, to);
  };
  swap('server 127.0.0.1:8069;', `server 127.0.0.1:${erpPort};`);
  // The demo serves its bus on its only port, as Odoo does without workers.
  swap('server 127.0.0.1:8072;', `server 127.0.0.1:${erpPort};`);
  // Several sidecar replicas: nginx's default round-robin over them.
  const sidecars = [sidecarPort].flat().map((p) => `server 127.0.0.1:${p};`).join('\n    ');
  swap('server 127.0.0.1:8390;', sidecars);
  swap('listen 80;', `listen 127.0.0.1:${listenPort};`);
  if (onError === 'pass') swap('error_page 502 504 = @session_check_refuse;', 'error_page 502 504 = @session_check_pass;');
  // Routed around the gate: the ERP is reached unchecked (the browser client alone is under test).
  if (!gate) swap('    auth_request /_session_timeout/auth;\n', '    auth_request off;\n');
  return site;
}

/** Real nginx in the foreground with everything it writes inside `dir`. */
export async function startNginx({ dir, erpPort, sidecarPort, onError, gate }) {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'site.conf'), nginxSite({ listenPort: port, erpPort, sidecarPort, onError, gate }));
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `${t}_temp_path ${path.join(dir, t)};`).join('\n  ');
  writeFileSync(path.join(dir, 'nginx.conf'), `# Generated by tests/e2e/proxy-harness.mjs around the shipped site.
${process.getuid && process.getuid() === 0 ? 'user root root;  # workers must write the temp dirs below\n' : ''}worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log stderr notice;
events { worker_connections 512; }
http {
  access_log ${path.join(dir, 'access.log')};
  ${temp}
  include ${path.join(dir, 'site.conf')};
}
`);
  const p = spawnLogged('nginx', which('nginx'), ['-p', dir, '-e', 'stderr', '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;']);
  const url = `http://127.0.0.1:${port}`;
  await untilReady(p, () => canConnect(port), 'nginx');
  return { url, port, log: () => `${p.log()}\n--- nginx access log ---\n${tail(path.join(dir, 'access.log'))}`, stop: p.stop };
}

/** Real Caddy with the shipped Caddyfile; only its environment variables are set. */
export async function startCaddy({ dir, erpPort, sidecarPort, onError = 'refuse' }) {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  const env = {
    ...process.env,
    HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_CONFIG_HOME: path.join(dir, 'config'),
    ERP_SITE: `http://127.0.0.1:${port}`, ERP_BIND: '127.0.0.1',
    ERP_UPSTREAM: `127.0.0.1:${erpPort}`, ERP_BUS_UPSTREAM: `127.0.0.1:${erpPort}`,
    SESSION_TIMEOUT_UPSTREAM: `127.0.0.1:${sidecarPort}`, SESSION_TIMEOUT_ON_ERROR: onError,
    CADDY_ADMIN: 'off',
  };
  const p = spawnLogged('caddy', which('caddy'), ['run', '--config', CADDYFILE, '--adapter', 'caddyfile'], { env, cwd: dir });
  const url = `http://127.0.0.1:${port}`;
  await untilReady(p, () => canConnect(port), 'caddy');
  return { url, port, log: p.log, stop: p.stop };
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function tail(file) {
  try { return readFileSync(file, 'utf8').slice(-4000); } catch { return '(none)'; }
}

/**
 * The whole deployment: ERP stand-in, sidecar, and the proxy in front.
 * `stop()` stops every process that was started, whatever failed.
 */
export async function startStack({ proxy = 'nginx', timeout = 3, onError } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), `st-proxy-${proxy}-`));
  const started = [];
  const stack = {
    dir, timeoutMs: timeout * 1000,
    logs: () => started.map((s) => s.log()).join('\n'),
    async stop() {
      for (const s of started.reverse()) await s.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    const erp = await startDemo({ timeout, extraArgs: ['--no-enforce'] });
    started.push({ log: () => `--- erp ---\n${erp.log()}`, stop: () => erp.stop() });
    stack.erp = erp;
    const erpPort = Number(new URL(erp.url).port);
    const sidecarPort = await freePort();
    stack.sidecarOpts = { port: sidecarPort, erpUrl: erp.url, timeout, db: path.join(dir, 'sidecar.db') };
    stack.sidecar = await startSidecar(stack.sidecarOpts);
    // The sidecar may be stopped and restarted by a test: always stop the current one.
    started.push({ log: () => stack.sidecar.log(), stop: () => stack.sidecar.stop() });
    const front = proxy === 'caddy'
      ? await startCaddy({ dir: path.join(dir, 'caddy'), erpPort, sidecarPort, onError })
      : await startNginx({ dir: path.join(dir, 'nginx'), erpPort, sidecarPort, onError });
    started.push(front);
    stack.proxy = front;
    stack.proxyName = proxy;
    stack.url = front.url;
    return stack;
  } catch (e) {
    e.message += `\n${stack.logs()}`;
    await stack.stop();
    throw e;
  }
}

/** Runs `fn(stack)` and always stops the stack; on failure the logs are attached. */
export async function withStack(opts, fn) {
  const stack = await startStack(opts);
  try {
    await fn(stack);
  } catch (e) {
    e.message += `\n${stack.logs().slice(-8000)}`;
    throw e;
  } finally {
    await stack.stop();
  }
}

/**
 * A browser with scripts off: plain HTTP requests, a cookie jar, redirects
 * seen one by one (never followed behind the test's back).
 */
export class Client {
  constructor(base) { this.base = base; this.jar = new Map(); }

  cookie(name = 'session_id') { return this.jar.get(name); }

  setCookie(name, value) { this.jar.set(name, value); }

  async request(pathAndQuery, { method = 'GET', form, json, headers = {} } = {}) {
    const h = { ...headers };
    if (this.jar.size) h.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body;
    if (form) { body = new URLSearchParams(form).toString(); h['content-type'] = 'application/x-www-form-urlencoded'; }
    if (json) { body = JSON.stringify(json); h['content-type'] = 'application/json'; }
    const res = await fetch(new URL(pathAndQuery, this.base), { method, headers: h, body, redirect: 'manual' });
    for (const sc of res.headers.getSetCookie()) {
      const [pair, ...attrs] = sc.split(';');
      const [k, v] = [pair.slice(0, pair.indexOf('=')).trim(), pair.slice(pair.indexOf('=') + 1).trim()];
      const gone = !v || attrs.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a));
      if (gone) this.jar.delete(k); else this.jar.set(k, v);
    }
    const text = await res.text();
    return { status: res.status, location: res.headers.get('location'), headers: res.headers, text };
  }

  get(p, o) { return this.request(p, o); }

  post(p, o) { return this.request(p, { ...o, method: 'POST' }); }

  /** Logs in through the login form, as a user without scripts would. */
  async login(user) {
    const page = await this.get('/web/login');
    const token = (page.text.match(/name="csrf_token" value="([^"]+)"/) || [])[1];
    const r = await this.post('/web/login', { form: { login: user, password: user, redirect: '', csrf_token: token } });
    if (r.status !== 303 || !this.cookie()) throw new Error(`login as ${user} failed: ${r.status} ${r.text.slice(0, 200)}`);
    return r;
  }

  /** Follows redirects like a browser (GET after 303), up to `max` hops. */
  async follow(p, max = 10) {
    const hops = [];
    let next = p;
    for (let i = 0; i <= max; i++) {
      const r = await this.get(next);
      hops.push({ path: next, status: r.status, location: r.location });
      if (r.status < 300 || r.status >= 400 || !r.location) return { hops, last: r, path: next };
      const to = new URL(r.location, new URL(next, this.base));
      next = to.pathname + to.search;
    }
    throw new Error(`more than ${max} redirects (a loop?): ${JSON.stringify(hops)}`);
  }
}

/** A GET with the path (and `headers`, latin-1) sent byte for byte (fetch would normalize `%2E%2E`). */
export function rawGet(base, rawPath, cookie, headers) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: rawPath, method: 'GET',
      headers: headers || (cookie ? { cookie: `session_id=${cookie}` } : {}) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, location: res.headers.location, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** What the sidecar says about a cookie (asked directly, read-only). */
export async function sidecarCheck(sidecar, cookie) {
  const r = await fetch(`${sidecar.url}/session-timeout/api/v1/check`, { headers: { cookie: `session_id=${cookie}` } });
  return r.json();
}

/** Sum of a Prometheus counter of the sidecar, over the series matching `labels`. */
export async function sidecarMetric(sidecar, name, labels = '') {
  const text = await (await fetch(`${sidecar.url}/session-timeout/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(labels)) n += Number(line.slice(line.lastIndexOf(' ') + 1));
    else if (line.startsWith(`${name} `)) n += Number(line.slice(name.length + 1));
  }
  return n;
}

/** What the ERP itself knows about a cookie, asked directly (not through the proxy). */
export async function erpSessionInfo(erp, cookie) {
  const r = await fetch(`${erp.url}/web/session/get_session_info`, {
    method: 'POST', headers: { cookie: `session_id=${cookie}`, 'content-type': 'application/json' }, body: '{}',
  });
  return r.json();
}

/** A TCP server that accepts connections and never answers: a hung sidecar. */
export async function hangingServer(port) {
  const sockets = new Set();
  const srv = net.createServer((s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}); });
  await new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(port, '127.0.0.1', resolve); });
  return { async close() { for (const s of sockets) s.destroy(); await new Promise((r) => srv.close(r)); } };
}

export { sleep, waitFor };
