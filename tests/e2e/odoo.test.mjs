// The addon in real Odoo 17.0 and 18.0 (issue #9): `make addon`'s output
// installed into a real Odoo server on real PostgreSQL, the sidecar beside it
// reading the timeout from the addon, real nginx with deploy/nginx as shipped
// in front, and real headless Chromium. Runs whenever an Odoo tree is found
// (ODOO_SRC_17 / ODOO_SRC_18, or ../shared/odoo/<series>); prints SKIPPED when
// none is, and fails instead of skipping when CI=true. Step 8 (issue #14):
// rules per group set in Odoo, the report, and "End every session".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launch, sleep, waitFor } from './harness.mjs';
import { Client, startNginx, LOGOUT_URL } from './proxy-harness.mjs';
import { DIST, OdooRpc, odooTree, startOdoo, startOdooSidecar } from './odoo-harness.mjs';

// ODOO_SERIES=17.0 runs one series only (while working on it); make test runs both.
const SERIES = (process.env.ODOO_SERIES || '17.0,18.0').split(',');
const CI = process.env.CI === 'true';
const SHORT_S = 10; // the short timeout set through the settings field

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A browser context with everything a user would notice recorded. */
async function openPage(stack, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = { errors: [], warnings: [], dialogs: [], wasm: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') seen.errors.push(m.text());
    if (m.type() === 'warning') seen.warnings.push(m.text());
  });
  page.on('pageerror', (e) => seen.errors.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => { seen.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('response', (r) => {
    if (r.url().endsWith('.wasm')) seen.wasm.push({ url: r.url(), status: r.status(), type: r.headers()['content-type'] });
  });
  stack.contexts.push(context);
  return { name, context, page, seen };
}

/** Logs in through Odoo's own login form, as a user would. */
async function loginForm({ page }, base, user) {
  await page.goto(`${base}/web/login`);
  await page.fill('input[name="login"]', user);
  await page.fill('input[name="password"]', user);
  await Promise.all([page.waitForURL((u) => u.pathname !== '/web/login', { timeout: 30000 }), page.click('button[type="submit"]')]);
}

const backOfficeShown = ({ page }) => page.locator('.o_main_navbar').first().waitFor({ state: 'visible', timeout: 60000 });
const path_ = (page) => new URL(page.url()).pathname;
/** In the back office: /web on 17; /odoo or an app under it (/odoo/discuss) on 18. */
const inBackOffice = (page, bo) => path_(page) === bo || path_(page).startsWith(`${bo}/`);
const cookieOf = async ({ context }) => (await context.cookies()).find((c) => c.name === 'session_id')?.value;

/** The service's handle in the running web client: { phase, deadline, ... } or null. */
async function serviceState({ page }) {
  await page.waitForFunction(() => window.odoo?.__WOWL_DEBUG__?.root?.env?.services, null, { timeout: 30000 });
  return page.evaluate(async () => {
    const service = odoo.__WOWL_DEBUG__.root.env.services.session_timeout;
    if (!service) return { registered: false };
    const handle = await service.ready;
    return { registered: true, started: !!handle, ...(handle ? handle.state() : {}) };
  });
}

/** Waits until the client has its first answer and nothing is in flight. */
async function clientSettled(p) {
  await waitFor(async () => {
    const s = await serviceState(p);
    return s.started && s.phase !== 'starting' && (s.phase !== 'running' || s.deadline > 0);
  }, { timeoutMs: 20000, what: 'the session timeout client to settle' });
}

/** General Settings, "Session timeout (seconds)": types a value and saves, as an administrator does. */
async function setTimeoutField(p, stack, value, warnBefore) {
  const { page } = p;
  const url = stack.odoo.series === '17.0'
    ? `${stack.url}/web#action=base_setup.action_general_configuration`
    : `${stack.url}/odoo/action-base_setup.action_general_configuration`;
  await page.goto(url);
  const input = page.locator('div[name="session_timeout_seconds"] input');
  await input.waitFor({ state: 'visible', timeout: 30000 });
  await page.mouse.move(20, 200, { steps: 2 }); // the administrator's own activity
  await input.fill(String(value));
  if (warnBefore !== undefined) await page.locator('div[name="session_timeout_warn_before"] input').fill(String(warnBefore));
  const saved = page.waitForEvent('load', { timeout: 30000 }); // Odoo reloads the client after saving settings
  await page.locator('.o_form_button_save').first().click();
  await saved;
  await backOfficeShown(p);
}

async function fieldValue({ page }) {
  const input = page.locator('div[name="session_timeout_seconds"] input');
  await input.waitFor({ state: 'visible', timeout: 30000 });
  return input.inputValue();
}

/** Waits for the sidecar to enforce a timeout; returns how long that took. */
function sidecarEnforces(stack, seconds, what) {
  return waitFor(async () => (await stack.sidecar.settings()).activity_session_timeout_key.effective === seconds,
    { timeoutMs: 10000, stepMs: 100, what });
}

const noErrorDialog = async ({ page }) =>
  assert.equal(await page.locator('.o_error_dialog, .o_dialog .modal-dialog').count(), 0, 'no dialog in the page');

async function withOdoo(series, fn) {
  const dir = mkdtempSync(path.join(tmpdir(), `st-odoo-${series}-`));
  const stack = { contexts: [], dir, logs: [] };
  const erpToken = randomBytes(24).toString('hex');
  const adminToken = randomBytes(24).toString('hex');
  const started = Date.now();
  try {
    stack.odoo = await startOdoo({ series, dir, token: erpToken });
    stack.logs.push(() => stack.odoo.log());
    stack.rpc = new OdooRpc(stack.odoo.url, stack.odoo.db);
    await stack.rpc.login('admin');
    await stack.rpc.install('session_timeout');
    stack.sidecar = await startOdooSidecar({ odoo: stack.odoo, dir, erpToken, adminToken });
    stack.logs.push(() => stack.sidecar.log());
    stack.nginx = await startNginx({ dir: path.join(dir, 'nginx'), erpPort: stack.odoo.port, sidecarPort: stack.sidecar.port });
    stack.logs.push(() => stack.nginx.log());
    stack.url = stack.nginx.url;
    console.log(`# ${series}: Odoo, addon, sidecar and nginx ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await fn(stack);
  } catch (e) {
    e.message += `\n${stack.logs.map((l) => l()).join('\n').slice(-12000)}`;
    throw e;
  } finally {
    for (const c of stack.contexts) await c.close().catch(() => {});
    for (const s of [stack.ungated, stack.nginx, stack.sidecar]) await s?.stop().catch(() => {});
    await stack.odoo?.stop();
    rmSync(dir, { recursive: true, force: true });
    console.log(`# ${series}: ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
  }
}

for (const series of SERIES) {
  const found = (() => { try { return odooTree(series); } catch (e) { return e; } })();
  const built = existsSync(path.join(DIST, series, 'session_timeout', '__manifest__.py'));
  let skip = false;
  if (found instanceof Error) throw found;
  if (!found) {
    if (CI) {
      test(`Odoo ${series}: an Odoo tree is required with CI=true`, () => {
        assert.fail(`no Odoo ${series} tree (set ODOO_SRC_${series.split('.')[0]} or provide ../shared/odoo/${series})`);
      });
      continue;
    }
    console.log(`SKIPPED: Odoo ${series} tests (no Odoo tree: set ODOO_SRC_${series.split('.')[0]} or provide ../shared/odoo/${series})`);
    skip = `no Odoo ${series} tree`;
  }
  test(`Odoo ${series}: the addon built by make addon, in real Odoo behind nginx, in Chromium`, { skip, concurrency: true }, async (t) => {
    assert.ok(built, `dist/addons/${series}/session_timeout is missing: run make addon`);
    await withOdoo(series, async (stack) => {
      const { odoo, sidecar } = stack;
      const bo = odoo.backOffice;

      // 1. admin logs in; the back office renders; no console error; the service runs its wasm.
      const a = await openPage(stack, 'admin A');
      await t.test('1. admin logs in: the back office renders, no console error, the service runs the wasm', async () => {
        await loginForm(a, stack.url, 'admin');
        assert.ok(inBackOffice(a.page, bo), `lands on ${bo}: ${a.page.url()}`);
        await backOfficeShown(a);
        await clientSettled(a);
        const s = await serviceState(a);
        assert.equal(s.registered, true, 'the session_timeout service is registered');
        assert.equal(s.phase, 'running', 'the client runs (internal user, timed)');
        assert.ok(s.listeners > 0, 'input listeners attached');
        assert.equal(a.seen.wasm.length, 1, `the wasm was fetched once: ${JSON.stringify(a.seen.wasm)}`);
        const [w] = a.seen.wasm;
        assert.equal(w.status, 200);
        assert.equal(w.type, 'application/wasm');
        assert.match(w.url, /\/session_timeout\/static\/lib\/[0-9a-f]{12}\/pkg\/session_timeout_client_bg\.wasm$/, 'versioned URL');
        assert.deepEqual(a.seen.errors, [], 'no console error');
        assert.deepEqual(a.seen.dialogs, []);
        const cfg = await sidecar.settings();
        assert.equal(cfg.activity_session_timeout_key.source, 'erp');
        assert.equal(cfg.activity_session_timeout_key.effective, 300, 'the default until an administrator sets one');
      });

      // 5 (first half) and 2: the short timeout set in General Settings reaches the sidecar,
      // and applies to A's session, opened before the change.
      const cookieA = await cookieOf(a);
      await t.test('5a. the timeout typed in General Settings is enforced within seconds, without a restart', async () => {
        const t0 = Date.now();
        await setTimeoutField(a, stack, SHORT_S);
        const took = Date.now() - t0 + await sidecarEnforces(stack, SHORT_S, `the sidecar to enforce ${SHORT_S} s`);
        console.log(`# ${series}: settings saved and enforced by the sidecar in ${took} ms`);
        assert.ok(took < 8000, `enforced ${took} ms after clicking Save`);
        assert.equal(await fieldValue(a), String(SHORT_S), 'the field shows the value');
        const params = await stack.rpc.kw('ir.config_parameter', 'get_param', ['activity_session_timeout_key']);
        assert.equal(params, String(SHORT_S), 'stored as the system parameter activity_session_timeout_key');
        const changed = (await sidecar.admin('audit?limit=1000')).body.events.map((e) => e.detail || JSON.stringify(e)).join('\n');
        assert.match(changed, new RegExp(`activity_session_timeout_key: .* -> ${SHORT_S} \\(from the ERP\\)`), 'audited');
        const refused = await sidecar.admin('settings', { method: 'PUT', body: JSON.stringify({ activity_session_timeout_key: 600 }) });
        assert.equal(refused.status, 409, 'the sidecar API refuses to disagree with the Odoo field');
        assert.equal(refused.body.error, 'managed_by_erp');
      });

      // The users of 2, 3 and 4 log in now, under the short timeout, so that their timeouts run together.
      const b = await openPage(stack, 'admin B (idle)');
      const c = await openPage(stack, 'admin C (active)');
      const d = await openPage(stack, 'portal D');
      await loginForm(b, stack.url, 'admin');
      await backOfficeShown(b);
      await loginForm(c, stack.url, 'admin');
      await backOfficeShown(c);
      await loginForm(d, stack.url, 'portal');
      const cookieB = await cookieOf(b);
      const cookieD = await cookieOf(d);

      const idle = t.test('2. idle past the timeout: the tab lands on /web/login on time; the old cookie is refused', async () => {
        await clientSettled(b);
        const { state, remaining_ms: remaining } = await sidecar.check(cookieB);
        assert.equal(state, 'active');
        assert.ok(remaining <= SHORT_S * 1000, `under the ${SHORT_S} s timeout (${remaining} ms left)`);
        const t0 = Date.now();
        await waitFor(() => path_(b.page) === '/web/login', { timeoutMs: remaining + 6000, stepMs: 50, what: 'the login page' });
        const late = Date.now() - t0 - remaining;
        console.log(`# ${series}: idle tab on the login page ${late} ms after the deadline`);
        assert.ok(late > -300, `not before the deadline (${late} ms)`);
        assert.ok(late <= 2500, `within 2.5 s of the deadline (${late} ms late)`);
        assert.equal((await sidecar.check(cookieB)).state, 'expired');
        const old = new Client(stack.url);
        old.setCookie('session_id', cookieB);
        const page = await old.get(bo);
        assert.equal(page.status, 303, `${bo} with the old cookie is refused`);
        assert.equal(page.location, LOGOUT_URL);
        const rpc = await old.post('/web/dataset/call_kw/res.users/read', { json: { jsonrpc: '2.0', method: 'call', params: {} } });
        assert.equal(rpc.status, 303, 'a JSON-RPC call with the old cookie is refused');
        assert.deepEqual(b.seen.dialogs, []);
        await noErrorDialog(b);
      });

      const before = t.test('5b. a session open before the change ends on the new timeout; reloaded, its tab shows the login page', async () => {
        // A opened its session under 300 s, then saved 10 s and went idle.
        await waitFor(async () => (await sidecar.check(cookieA)).state === 'expired',
          { timeoutMs: (SHORT_S + 10) * 1000, what: "A's session to end on the new timeout" });
        const old = new Client(stack.url);
        old.setCookie('session_id', cookieA);
        assert.equal((await old.get(bo)).status, 303, "A's cookie is refused by nginx");
        // Odoo 17 also takes a session id from the query string and from X-Openerp-Session-Id (before the
        // cookie); A's Odoo session is still alive here (no browser followed the logout yet): the gate refuses it there too.
        const viaQuery = await new Client(stack.url).get(`${bo}?session_id=${cookieA}`);
        assert.equal(viaQuery.status, 303, `A's session id in the query string is refused (${viaQuery.status})`);
        assert.equal(viaQuery.location, LOGOUT_URL);
        const viaHeader = await new Client(stack.url).get(bo, { headers: { 'x-openerp-session-id': cookieA } });
        assert.equal(viaHeader.status, 303, `A's session id in X-Openerp-Session-Id is refused (${viaHeader.status})`);
        // The tab learns it at its next contact with the sidecar (a heartbeat once its
        // slot opens, its deadline check) or at once on any page load: nginx refuses it.
        await a.page.reload();
        assert.equal(path_(a.page), '/web/login', "A's tab reloaded shows the login page");
        assert.deepEqual(a.seen.dialogs, []);
      });

      const active = t.test('3. an active user (mouse and keys every few seconds) stays in for 3 timeouts', async () => {
        const end = Date.now() + 3 * SHORT_S * 1000 + 2000;
        let x = 10;
        while (Date.now() < end) {
          x = x === 10 ? 300 : 10;
          await c.page.mouse.move(x, 300, { steps: 3 });
          await c.page.keyboard.press('Shift');
          await sleep(2500);
        }
        assert.ok(inBackOffice(c.page, bo), `still in the back office (${c.page.url()})`);
        assert.equal((await sidecar.check(await cookieOf(c))).state, 'active');
        assert.deepEqual(c.seen.errors, [], 'no console error');
      });

      const portal = t.test('4. a portal user stays on /my for 3 timeouts', async () => {
        assert.equal(path_(d.page), '/my');
        await sleep(3 * SHORT_S * 1000 + 2000);
        const r = await d.page.reload();
        assert.equal(r.status(), 200);
        assert.equal(path_(d.page), '/my', 'still on /my after 3 timeouts idle');
        assert.equal((await sidecar.check(cookieD)).state, 'exempt');
      });
      await Promise.all([idle, before, active, portal]);

      await t.test('5c. a raised timeout applies to an open session; an invalid value falls back to 300', async () => {
        // E opens its session under the 10 s timeout and stays busy while an administrator (H) saves 0,
        // an invalid value, in General Settings: it falls back to 300 s.
        const e = await openPage(stack, 'admin E (open before the change)');
        const h = await openPage(stack, 'admin H (settings)');
        await loginForm(e, stack.url, 'admin');
        await backOfficeShown(e);
        await clientSettled(e);
        const cookieE = await cookieOf(e);
        assert.ok((await sidecar.check(cookieE)).remaining_ms <= SHORT_S * 1000, 'E starts under the short timeout');
        let busy = true;
        const eBusy = (async () => {
          for (let x = 10; busy; x = 310 - x) { await e.page.mouse.move(x, 300, { steps: 2 }); await sleep(1000); }
        })();
        await loginForm(h, stack.url, 'admin');
        await backOfficeShown(h);
        await setTimeoutField(h, stack, 0);
        await sidecarEnforces(stack, 300, 'the sidecar to fall back to 300 s');
        busy = false;
        await eBusy;
        assert.equal(await fieldValue(h), '300', 'the field shows 300 for 0');
        assert.equal(await stack.rpc.kw('ir.config_parameter', 'get_param', ['activity_session_timeout_key']), '300');
        // E, now idle, outlives the old timeout: the new one applies to its open session.
        await sleep(SHORT_S * 1000 + 3000);
        assert.ok(inBackOffice(e.page, bo), `E is still in the back office ${SHORT_S + 3} s idle (${e.page.url()})`);
        const after = await sidecar.check(cookieE);
        assert.equal(after.state, 'active');
        assert.ok(after.remaining_ms > 250000, `E now has the 300 s timeout (${after.remaining_ms} ms left)`);
        // A value that is not a number, set as a system parameter: 300 too, and the settings still open.
        await stack.rpc.kw('ir.config_parameter', 'set_param', ['activity_session_timeout_key', 'abc']);
        await waitFor(async () => (await sidecar.settings()).activity_session_timeout_key.configured === 'abc',
          { timeoutMs: 10000, what: 'the sidecar to read "abc"' });
        const s = (await sidecar.settings()).activity_session_timeout_key;
        assert.equal(s.effective, 300);
        assert.equal(s.valid, false);
        await h.page.reload();
        assert.equal(await fieldValue(h), '300', 'the settings page opens and shows 300 for "abc"');
        for (const p of [e, h]) assert.deepEqual(p.seen.errors, [], `no console error (${p.name})`);
      });

      await t.test('5d. the notice before logout: set beside the timeout, shown by Odoo\'s notification service, its button keeps the session', async () => {
        const NOTICE_TIMEOUT_S = 12;
        const h = await openPage(stack, 'admin I (notice)');
        await loginForm(h, stack.url, 'admin');
        await backOfficeShown(h);
        await setTimeoutField(h, stack, NOTICE_TIMEOUT_S, 5);
        await sidecarEnforces(stack, NOTICE_TIMEOUT_S, 'the sidecar to enforce the short timeout');
        await waitFor(async () => (await sidecar.settings()).warn_before_s.effective === 5,
          { timeoutMs: 10000, what: 'the sidecar to read the notice lead from Odoo' });
        const n = await openPage(stack, 'admin J (sees the notice)');
        await loginForm(n, stack.url, 'admin');
        await backOfficeShown(n);
        await clientSettled(n);
        const cookie = await cookieOf(n);
        const notice = n.page.locator('.o_notification:has-text("signed out in")');
        const { remaining_ms: left } = await sidecar.check(cookie);
        const shown = await waitFor(async () => (await notice.count()) === 1, { timeoutMs: left + 2000, what: 'the notice' });
        console.log(`# ${series}: notice shown ${left - shown} ms before the deadline`);
        assert.ok(shown >= left - 5000 - 1000, `not shown too early (${shown} ms of ${left})`);
        await noErrorDialog(n);
        // "Stay signed in" (clicked without moving the mouse: a move alone is input, which
        // takes the notice down too) keeps the session.
        await notice.locator('button:has-text("Stay signed in")').evaluate((b) => b.click());
        await waitFor(async () => (await notice.count()) === 0, { timeoutMs: 3000, what: 'the notice to go' });
        await waitFor(async () => (await sidecar.check(cookie)).remaining_ms > 8000, { timeoutMs: 5000, what: 'the session extended' });
        assert.ok(inBackOffice(n.page, bo), 'still in the back office');
        // Back to 300 s and no notice for the scenarios after this one (as system parameters:
        // administrator I has been idle past the short timeout meanwhile).
        await stack.rpc.kw('ir.config_parameter', 'set_param', ['activity_session_timeout_key', '300']);
        await stack.rpc.kw('ir.config_parameter', 'set_param', ['session_timeout_warn_before_s', '0']);
        await sidecarEnforces(stack, 300, 'the sidecar to enforce 300 s again');
        for (const p of [n, h]) assert.deepEqual(p.seen.errors, [], `no console error (${p.name})`);
      });

      await t.test('8. rules per group: each user gets their own deadline, the strictest wins, a change reaches an open session, the report matches, "End every session" on the user form', async () => {
        const SHORT = 30; const LONG = 90; const CHANGED = 60; // seconds: the 2- and 10-minute rules of a real setup, shortened
        const rpc = stack.rpc;
        const ref = async (xmlid) => {
          const [module, name] = xmlid.split('.');
          const [r] = await rpc.kw('ir.model.data', 'search_read', [[['module', '=', module], ['name', '=', name]], ['res_id']]);
          return r.res_id;
        };
        const internal = await ref('base.group_user');
        const shortGroup = await rpc.kw('res.groups', 'create', [{ name: 'Timeout test: short' }]);
        const longGroup = await rpc.kw('res.groups', 'create', [{ name: 'Timeout test: long' }]);
        const user = (login, groups) => rpc.kw('res.users', 'create', [{ name: login, login, password: login, groups_id: [[6, 0, [internal, ...groups]]] }]);
        const uShort = await user('st_short', [shortGroup]);
        const uLong = await user('st_long', [longGroup]);
        await user('st_both', [shortGroup, longGroup]);
        const ruleShort = await rpc.kw('session_timeout.rule', 'create', [{ group_id: shortGroup, idle_s: SHORT }]);
        const ruleLong = await rpc.kw('session_timeout.rule', 'create', [{ group_id: longGroup, idle_s: LONG }]);
        const rulesRead = await waitFor(async () => (await sidecar.admin('policy')).body.rules.length === 2,
          { timeoutMs: 10000, stepMs: 100, what: 'the sidecar to read both rules from Odoo' });
        console.log(`# ${series}: rules created in Odoo, read by the sidecar ${rulesRead} ms later`);
        const policy = (await sidecar.admin('policy')).body;
        assert.equal(policy.source, 'erp');
        assert.deepEqual(policy.rules.map((r) => [r.group, r.uids.length, r.idle_s]),
          [['Timeout test: short', 2, SHORT], ['Timeout test: long', 2, LONG]], JSON.stringify(policy.rules));
        assert.ok(policy.rules[0].uids.includes(uShort) && policy.rules[1].uids.includes(uLong), 'the members as Odoo has them');

        // Each logs in through the form; the sidecar times each by their own rule.
        const pages = {};
        for (const login of ['st_short', 'st_long', 'st_both']) {
          pages[login] = await openPage(stack, `${login} (rules)`);
          await loginForm(pages[login], stack.url, login);
          await backOfficeShown(pages[login]);
        }
        for (const p of Object.values(pages)) await clientSettled(p);
        const cookies = {};
        for (const [login, p] of Object.entries(pages)) cookies[login] = await cookieOf(p);
        const own = async (login) => (await sidecar.check(cookies[login])).timeout_s;
        assert.equal(await own('st_short'), SHORT);
        assert.equal(await own('st_long'), LONG);
        assert.equal(await own('st_both'), SHORT, 'in both groups: the shorter');
        // Idle, the short and the both land on the login page on their own deadline; the long one stays.
        const { remaining_ms: left } = await sidecar.check(cookies.st_short);
        const { remaining_ms: leftBoth } = await sidecar.check(cookies.st_both);
        const t0 = Date.now();
        await waitFor(async () => path_(pages.st_short.page) === '/web/login',
          { timeoutMs: left + 6000, stepMs: 100, what: 'the short-rule user on the login page' });
        const late = Date.now() - t0 - left;
        console.log(`# ${series}: ${SHORT} s rule: the tab on the login page ${late} ms after the deadline`);
        assert.ok(late > -300, `not before the deadline (${late} ms)`);
        assert.ok(late <= 2500, `within 2.5 s of the deadline (${late} ms late)`);
        await waitFor(async () => path_(pages.st_both.page) === '/web/login',
          { timeoutMs: Math.max(0, leftBoth - (Date.now() - t0)) + 6000, stepMs: 100, what: 'the user in both groups on the login page' });
        assert.ok(inBackOffice(pages.st_long.page, bo), `the ${LONG} s user is still in (${pages.st_long.page.url()})`);
        assert.equal((await sidecar.check(cookies.st_long)).state, 'active');

        // A rule changed in Odoo reaches the open session within seconds.
        // st_long keeps working from here to the button below (real input: heartbeats).
        let busy = true;
        const longBusy = (async () => {
          for (let x = 10; busy; x = 310 - x) { await pages.st_long.page.mouse.move(x, 300, { steps: 2 }).catch(() => {}); await sleep(1000); }
        })();
        t.after(() => { busy = false; });
        await rpc.kw('session_timeout.rule', 'write', [[ruleLong], { idle_s: CHANGED }]);
        const changedIn = await waitFor(async () => (await own('st_long')) === CHANGED, { timeoutMs: 8000, stepMs: 100, what: 'the open session to take the changed rule' });
        console.log(`# ${series}: a changed rule reached the open session in ${changedIn} ms`);
        const audit = (await sidecar.admin('audit?limit=1000')).body.events.map((e) => e.detail || '').join('\n');
        assert.match(audit, new RegExp(`policy_rules: .*"idle_s":${LONG}.* -> .*"idle_s":${CHANGED}.* \\(from the ERP, by admin\\)`), 'the change audited, old and new, by whom');

        // The report in Odoo: the figures the sidecar reports and enforces.
        const action = await rpc.kw('session_timeout.report.line', 'action_session_timeout_open_report');
        const lines = await rpc.kw('session_timeout.report.line', 'search_read', [action.domain, ['applies_to', 'idle_s', 'absolute_s', 'exempt', 'pci_dss_4', 'psd2']]);
        const sidecarReport = (await sidecar.admin('policy/report')).body.lines;
        const inOdoo = (name) => lines.find((l) => l.applies_to.includes(name));
        const inSidecar = (name) => sidecarReport.find((l) => l.applies_to.includes(name));
        assert.equal(inOdoo('short').idle_s, SHORT);
        assert.equal(inOdoo('long').idle_s, CHANGED);
        for (const name of ['short', 'long']) {
          assert.equal(inSidecar(name).idle_s, inOdoo(name).idle_s, `the sidecar's report says the same for ${name}`);
          assert.equal(inSidecar(name).standards.find((v) => v.standard === 'pci-dss-4').met, inOdoo(name).pci_dss_4 === 'met');
        }
        assert.equal(inOdoo('default').idle_s, (await sidecar.settings()).activity_session_timeout_key.effective);
        assert.equal(await own('st_long'), inOdoo('long').idle_s, 'enforced as reported');
        // The rules list and the report open in the back office.
        const k = await openPage(stack, 'admin K (rules, report, user form)');
        await loginForm(k, stack.url, 'admin');
        await backOfficeShown(k);
        const actionUrl = (xmlid) => (series === '17.0' ? `${stack.url}/web#action=${xmlid}` : `${stack.url}/odoo/action-${xmlid}`);
        await k.page.goto(actionUrl('session_timeout.session_timeout_rule_action'));
        await k.page.locator('.o_data_row').first().waitFor({ state: 'visible', timeout: 30000 });
        assert.equal(await k.page.locator('.o_data_row').count(), 2, 'both rules listed');
        await k.page.goto('about:blank');
        await k.page.goto(actionUrl('session_timeout.session_timeout_report_action'));
        await k.page.locator('.o_data_row:has-text("Timeout test: long")').waitFor({ state: 'visible', timeout: 30000 });

        // "End every session" on st_long's form: both of st_long's browsers go to the login page.
        const second = await openPage(stack, 'st_long, second browser');
        await loginForm(second, stack.url, 'st_long');
        await backOfficeShown(second);
        await clientSettled(second);
        const cookie2 = await cookieOf(second);
        await k.page.goto('about:blank'); // a page load, not a change of the hash (17)
        await k.page.goto(series === '17.0'
          ? `${stack.url}/web#action=base.action_res_users&id=${uLong}&model=res.users&view_type=form`
          : `${stack.url}/odoo/action-base.action_res_users/${uLong}`);
        const button = k.page.locator('button[name="action_session_timeout_end_sessions"]');
        await button.waitFor({ state: 'visible', timeout: 30000 }).catch(async (e) => {
          await k.page.screenshot({ path: path.join(tmpdir(), `st-user-form-${series}.png`) });
          throw e;
        });
        busy = false;
        await longBusy;
        await button.click();
        // Odoo asks to confirm (the button's `confirm`): the administrator does.
        const ok = k.page.locator('.modal-footer button.btn-primary');
        await ok.waitFor({ state: 'visible', timeout: 10000 });
        const clicked = Date.now();
        await ok.click();
        await waitFor(async () => (await sidecar.check(cookies.st_long)).state === 'expired' && (await sidecar.check(cookie2)).state === 'expired',
          { timeoutMs: 8000, stepMs: 100, what: "both of st_long's sessions to end" });
        console.log(`# ${series}: "End every session" clicked, both sessions refused ${Date.now() - clicked} ms later`);
        assert.equal((await sidecar.check(cookie2)).reason, 'revoked');
        // Each tab learns it at its next heartbeat (input), which waits for its slot (up to an
        // interval, a quarter of the timeout, plus jitter, after the last one), and goes to the
        // login page by itself.
        await Promise.all([pages.st_long, second].map(async (p) => {
          const t1 = performance.now();
          await p.page.mouse.move(50, 250, { steps: 2 });
          await waitFor(() => path_(p.page) === '/web/login', { timeoutMs: 35000, stepMs: 100, what: `${p.name} on the login page` })
            .catch(async (e) => {
              const s = await serviceState(p).catch((err) => ({ error: err.message }));
              e.message += ` (at ${p.page.url()}; client ${JSON.stringify(s)}; console errors ${JSON.stringify(p.seen.errors.slice(-5))})`;
              throw e;
            });
          console.log(`# ${series}: ${p.name} on the login page ${Math.round(performance.now() - t1)} ms after its input`);
        }));
        const ended = (await sidecar.admin('audit?limit=1000')).body.events.map((e) => e.detail || '').join('\n');
        assert.match(ended, new RegExp(`uid ${uLong}: 2 sessions ended \\(asked by admin in the ERP\\)`));
        assert.ok(inBackOffice(k.page, bo), 'the administrator who asked is still in');
        assert.deepEqual(k.seen.errors, [], 'no console error');
        // Cleanup for what follows: no rules.
        await rpc.kw('session_timeout.rule', 'unlink', [[ruleShort, ruleLong]]);
        await waitFor(async () => (await sidecar.admin('policy')).body.rules.length === 0, { timeoutMs: 10000, what: 'the rules to go' });
      });

      await t.test('6. sidecar stopped: the back office still loads, one warning, no error dialog', async () => {
        await sidecar.stop();
        // Routed around the gate (which refuses everything while the sidecar is down, by design):
        // the service alone meets a sidecar that does not answer.
        stack.ungated = await startNginx({ dir: path.join(stack.dir, 'nginx-ungated'), erpPort: odoo.port, sidecarPort: sidecar.port, gate: false });
        const f = await openPage(stack, 'admin F (sidecar down)');
        await loginForm(f, stack.ungated.url, 'admin');
        await backOfficeShown(f);
        await sleep(8000); // the client retries with backoff: 1, 2, 4 s...
        await backOfficeShown(f);
        const ours = f.seen.warnings.filter((w) => w.startsWith('session timeout:'));
        assert.equal(ours.length, 1, `one warning from the service: ${JSON.stringify(f.seen.warnings)}`);
        assert.match(ours[0], /no answer from \/session-timeout; retrying/);
        const s = await serviceState(f);
        assert.equal(s.started, true, 'the client is loaded and keeps trying');
        assert.deepEqual(f.seen.dialogs, []);
        await noErrorDialog(f);
        assert.deepEqual(f.seen.errors.filter((m) => m.startsWith('pageerror')), [], 'no uncaught error');
      });

      await t.test('7. uninstalling the addon leaves a working back office', async () => {
        await stack.rpc.uninstall('session_timeout');
        const g = await openPage(stack, 'admin G (after uninstall)');
        await loginForm(g, stack.ungated.url, 'admin');
        await backOfficeShown(g);
        const s = await serviceState(g);
        assert.equal(s.registered, false, 'no session_timeout service any more');
        const url = series === '17.0'
          ? `${stack.ungated.url}/web#action=base_setup.action_general_configuration`
          : `${stack.ungated.url}/odoo/action-base_setup.action_general_configuration`;
        await g.page.goto(url);
        await g.page.locator('.o_setting_container, .settings').first().waitFor({ state: 'visible', timeout: 30000 });
        assert.equal(await g.page.locator('div[name="session_timeout_seconds"]').count(), 0, 'the field is gone');
        assert.deepEqual(g.seen.errors, [], 'no console error');
        await noErrorDialog(g);
      });
    });
  });
}
