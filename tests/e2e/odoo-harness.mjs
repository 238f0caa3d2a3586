// Helpers of the real-Odoo tests: a real Odoo 17.0 or 18.0 server (started with
// ../shared/odoo/odoo.sh on a database of its own, with `make addon`'s output in
// its addons path), the addon installed the way an administrator does it
// (update the Apps list, install), the sidecar reading the timeout from the
// addon, and JSON-RPC calls as a logged-in user.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BIN } from './harness.mjs';
import { freePort, spawnLogged, untilReady } from './proxy-harness.mjs';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DIST = path.join(ROOT, 'dist/addons');

/**
 * The Odoo tree of a series, or null: `ODOO_SRC_17` / `ODOO_SRC_18` (a tree
 * laid out as in ../shared/odoo, with odoo.sh in its parent folder), else
 * ../shared/odoo/<series> beside this checkout.
 */
export function odooTree(series) {
  const env = process.env[`ODOO_SRC_${series.split('.')[0]}`];
  const tree = env ? path.resolve(env) : path.resolve(ROOT, '..', 'shared', 'odoo', series);
  if (!existsSync(path.join(tree, 'odoo-bin'))) {
    if (env) throw new Error(`ODOO_SRC_${series.split('.')[0]}=${env} has no odoo-bin`);
    return null;
  }
  const script = path.join(path.dirname(tree), 'odoo.sh');
  if (!existsSync(script)) throw new Error(`no odoo.sh beside ${tree} (expected ${script})`);
  if (path.basename(tree) !== series) throw new Error(`odoo.sh expects the ${series} tree in a folder named ${series}, not ${tree}`);
  return { tree, script, shared: path.dirname(tree) };
}

/**
 * Starts real Odoo on a fresh database of its own (admin/admin, portal/portal),
 * behind nothing (loopback), with the built addon in its addons path and the
 * token in its config file. `stop()` stops it and drops the database.
 */
export async function startOdoo({ series, dir, token }) {
  const found = odooTree(series);
  const port = await freePort();
  const db = `st_addon${series.split('.')[0]}_${process.pid}`;
  const conf = path.join(dir, `odoo-${series}.conf`);
  // The addon reads its token from here; it never reaches the database or a browser.
  writeFileSync(conf, `[options]\nsession_timeout_token = ${token}\n`);
  const addons = [path.join(found.tree, 'addons'), path.join(found.shared, 'stubs'), path.join(DIST, series)].join(',');
  const env = {
    ...process.env,
    // Later options win over odoo.sh's own: our addons path and config file.
    ODOO_EXTRA_ARGS: `-c ${conf} --addons-path=${addons} --proxy-mode --max-cron-threads=0`,
    ODOO_WAIT_SECONDS: '300',
  };
  const odooSh = (...args) => run('bash', [found.script, ...args], { env, maxBuffer: 1 << 24, timeout: 15 * 60 * 1000 });
  // A database left by an interrupted run of this process id would hold the addon already.
  await run('dropdb', ['--if-exists', db]).catch(() => {});
  let out;
  try {
    out = await odooSh('start', series, String(port), db);
  } catch (e) {
    throw new Error(`odoo.sh start ${series} failed: ${e.stderr || e.message}`);
  }
  const log = (out.stdout.match(/^log: (.*)$/m) || [])[1];
  const url = `http://127.0.0.1:${port}`;
  return {
    series, port, db, url, conf,
    backOffice: series === '17.0' ? '/web' : '/odoo',
    log: () => (log && existsSync(log) ? `--- odoo ${series} (${log}) ---\n${tailFile(log)}` : ''),
    async stop() {
      await odooSh('stop', series, String(port)).catch(() => {});
      await run('dropdb', ['--if-exists', db]).catch(() => {});
      const state = process.env.ODOO_STATE_DIR || '/var/cache/odoo-state';
      rmSync(path.join(state, `data-${series}-${port}`), { recursive: true, force: true });
    },
  };
}

function tailFile(file) {
  try {
    return readFileSync(file, 'utf8').slice(-6000);
  } catch {
    return '';
  }
}

/** JSON-RPC to Odoo as a logged-in user (its own cookie jar of one cookie). */
export class OdooRpc {
  constructor(base, db) { this.base = base; this.db = db; this.cookie = null; }

  async call(route, params) {
    const headers = { 'content-type': 'application/json' };
    if (this.cookie) headers.cookie = `session_id=${this.cookie}`;
    const r = await fetch(new URL(route, this.base), {
      method: 'POST', headers, redirect: 'manual',
      body: JSON.stringify({ jsonrpc: '2.0', method: 'call', id: 1, params }),
    });
    const set = r.headers.getSetCookie().map((c) => c.match(/^session_id=([^;]*)/)).find(Boolean);
    if (set) this.cookie = set[1];
    const body = await r.json();
    if (body.error) throw new Error(`${route}: ${JSON.stringify(body.error).slice(0, 600)}`);
    return body.result;
  }

  async login(user) {
    const res = await this.call('/web/session/authenticate', { db: this.db, login: user, password: user });
    if (!res || !res.uid) throw new Error(`login as ${user} failed`);
    return res;
  }

  kw(model, method, args = [], kwargs = {}) {
    return this.call(`/web/dataset/call_kw/${model}/${method}`, { model, method, args, kwargs });
  }

  async moduleState(name) {
    const [m] = await this.kw('ir.module.module', 'search_read', [[['name', '=', name]], ['state']]);
    return m ? m.state : null;
  }

  /** Apps > Update Apps List, then Install, as an administrator does. */
  async install(name) {
    await this.kw('ir.module.module', 'update_list');
    const [m] = await this.kw('ir.module.module', 'search_read', [[['name', '=', name]], ['id', 'state']]);
    if (!m) throw new Error(`Odoo does not list the module ${name} (is it in the addons path, with a version of this series?)`);
    await this.kw('ir.module.module', 'button_immediate_install', [[m.id]]);
    const state = await this.moduleState(name);
    if (state !== 'installed') throw new Error(`${name} is ${state} after install`);
  }

  async uninstall(name) {
    const [m] = await this.kw('ir.module.module', 'search_read', [[['name', '=', name]], ['id']]);
    await this.kw('ir.module.module', 'button_immediate_uninstall', [[m.id]]);
    const state = await this.moduleState(name);
    if (state !== 'uninstalled') throw new Error(`${name} is ${state} after uninstall`);
  }
}

/** `session-timeout serve` beside Odoo, reading the timeout from the addon. */
export async function startOdooSidecar({ odoo, dir, erpToken, adminToken, port }) {
  port = port || await freePort();
  const tokenFile = path.join(dir, 'erp-token');
  writeFileSync(tokenFile, erpToken, { mode: 0o600 });
  const url = `http://127.0.0.1:${port}`;
  const p = spawnLogged('sidecar', BIN, ['serve', '--bind', `127.0.0.1:${port}`, '--db', path.join(dir, 'sidecar.db'),
    '--session-info-url', `${odoo.url}/web/session/get_session_info`,
    '--erp-settings-url', `${odoo.url}/session_timeout/settings`, '--erp-token-file', tokenFile],
  { env: { ...process.env, RUST_LOG: 'info', SESSION_TIMEOUT_ADMIN_TOKEN: adminToken } });
  await untilReady(p, async () => (await fetch(`${url}/session-timeout/healthz`)).status === 200, 'the sidecar');
  const admin = async (route, init = {}) => {
    const r = await fetch(`${url}/session-timeout/api/v1/admin/${route}`, {
      ...init, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', ...(init.headers || {}) },
    });
    return { status: r.status, body: await r.json() };
  };
  return {
    url, port, log: p.log, stop: p.stop, admin,
    async settings() { return (await admin('settings')).body; },
    async check(cookie) {
      const r = await fetch(`${url}/session-timeout/api/v1/check`, { headers: { cookie: `session_id=${cookie}` } });
      return r.json();
    },
  };
}
