// Issue #3 scenarios: real headless Chromium, the real wasm bundle, the real
// `session-timeout demo` server with a 4 s timeout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDemo, launch, newPage, login, sessionCookie, serverCheck, serverAuth, heartbeatsAtServer,
  waitFor, onLoginPage, onBackOffice, keepMoving, setHidden, clientReady, sleep,
} from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser.close(); });

async function withDemo(opts, fn) {
  const demo = await startDemo(opts);
  const context = await browser.newContext();
  const dialogs = [];
  try {
    await fn({ demo, context, dialogs });
    assert.deepEqual(dialogs, [], 'no dialog of any kind appears');
  } catch (e) {
    e.message += `\n--- server log ---\n${demo.log().slice(-3000)}`;
    throw e;
  } finally {
    await context.close();
    await demo.stop();
  }
}

test('1. an idle internal user lands on the login page about when the session expires', () =>
  withDemo({ timeout: 4 }, async ({ demo, context, dialogs }) => {
    const page = await newPage(context, dialogs);
    await login(page, demo, 'admin');
    assert.ok(onBackOffice(page), `back office shown after login, got ${page.url()}`);
    await clientReady(page);
    const cookie = await sessionCookie(context);
    const { remaining_ms: remaining } = await serverCheck(demo, cookie);
    const t0 = Date.now();
    const took = await waitFor(() => onLoginPage(page), { timeoutMs: remaining + 3000, what: 'the login page' });
    const late = took - remaining;
    assert.ok(late > -300, `not logged out early (${late} ms after the deadline)`);
    assert.ok(late < 1500, `on the login page within about a second of the deadline (${late} ms late)`);
    assert.ok(Date.now() - t0 >= remaining - 300);
    assert.equal((await serverCheck(demo, cookie)).state, 'expired', 'the server says expired');
    assert.equal(await serverAuth(demo, cookie), 401, 'the old cookie gets 401 from auth');
  }));

test('2. a user who keeps moving the mouse or typing stays logged in for several timeouts', () =>
  withDemo({ timeout: 4 }, async ({ demo, context, dialogs }) => {
    const page = await newPage(context, dialogs);
    await login(page, demo, 'admin');
    await clientReady(page);
    await keepMoving(page, 6000);
    await page.click('#notes');
    for (let i = 0; i < 12; i++) { await page.keyboard.type('ab', { delay: 100 }); await sleep(300); }
    await keepMoving(page, 3000);
    // About 15 s, nearly four timeouts.
    assert.ok(onBackOffice(page), `still in the back office, got ${page.url()}`);
    assert.equal((await serverCheck(demo, await sessionCookie(context))).state, 'active');
  }));

test('3. a hidden tab sends no heartbeats, expires, and shows the login page when visible again', () =>
  withDemo({ timeout: 4 }, async ({ demo, context, dialogs }) => {
    const page = await newPage(context, dialogs);
    await login(page, demo, 'admin');
    await clientReady(page);
    await keepMoving(page, 1500);
    // Read now: once the session ends, the ERP logout clears the cookie.
    const cookie = await sessionCookie(context);
    await setHidden(page, true);
    await sleep(300); // a heartbeat already in flight may land
    const before = await heartbeatsAtServer(demo);
    // Input the page still receives while hidden must not turn into heartbeats.
    await keepMoving(page, 5000);
    assert.equal(await heartbeatsAtServer(demo), before, 'no heartbeat while hidden');
    await waitFor(async () => (await serverCheck(demo, cookie)).state === 'expired', { timeoutMs: 3000, what: 'expiry' });
    await setHidden(page, false);
    const took = await waitFor(() => onLoginPage(page), { timeoutMs: 3000, what: 'the login page' });
    assert.ok(took < 1000, `straight to the login page on becoming visible (${took} ms)`);
  }));

test('3b. a session ended elsewhere while the tab was hidden: the login page as soon as it is visible', () =>
  withDemo({ timeout: 30 }, async ({ demo, context, dialogs }) => {
    // A long timeout, so the client's own deadline timer cannot be what
    // sends the user away: only the check on becoming visible can.
    const page = await newPage(context, dialogs);
    await login(page, demo, 'admin');
    await clientReady(page);
    const cookie = await sessionCookie(context);
    await setHidden(page, true);
    const r = await fetch(`${demo.url}/session-timeout/api/v1/logout`, {
      method: 'POST', headers: { cookie: `session_id=${cookie}`, 'content-type': 'application/json' }, body: '{}' });
    assert.equal((await r.json()).state, 'expired');
    await sleep(1500);
    assert.ok(onBackOffice(page), 'nothing happens while hidden and before the deadline');
    await setHidden(page, false);
    const took = await waitFor(() => onLoginPage(page), { timeoutMs: 3000, what: 'the login page' });
    assert.ok(took < 1000, `on the login page within a second of becoming visible (${took} ms)`);
  }));

test('4. browser closed, reopened with the same cookie after the timeout: login page', () =>
  withDemo({ timeout: 3 }, async ({ demo, context, dialogs }) => {
    const page = await newPage(context, dialogs);
    await login(page, demo, 'admin');
    await clientReady(page);
    const cookies = await context.cookies();
    await page.close();
    await sleep(3600);
    const context2 = await browser.newContext();
    try {
      await context2.addCookies(cookies);
      const page2 = await newPage(context2, dialogs);
      await page2.goto(`${demo.url}/odoo`);
      assert.ok(onLoginPage(page2), `expected the login page, got ${page2.url()}`);
      assert.equal(await page2.locator('#login').count(), 1);
    } finally { await context2.close(); }
  }));

test('5. a portal user who stays idle is never logged out', () =>
  withDemo({ timeout: 3 }, async ({ demo, context, dialogs }) => {
    const page = await newPage(context, dialogs);
    await login(page, demo, 'portal');
    assert.equal(new URL(page.url()).pathname, '/my');
    await clientReady(page);
    await sleep(8000);
    assert.equal(new URL(page.url()).pathname, '/my', 'still on the portal');
    assert.equal((await serverCheck(demo, await sessionCookie(context))).state, 'exempt');
  }));

test('6. two tabs act as one: activity in one keeps both, logout in one reaches the other, one heartbeat stream', () =>
  withDemo({ timeout: 4 }, async ({ demo, context, dialogs }) => {
    const a = await newPage(context, dialogs);
    await login(a, demo, 'admin');
    const b = await newPage(context, dialogs);
    await b.goto(`${demo.url}/odoo`);
    await clientReady(a);
    await clientReady(b);
    // Typing only in tab A for three timeouts keeps tab B logged in too.
    await a.click('#notes');
    const end = Date.now() + 12000;
    while (Date.now() < end) { await a.keyboard.type('x', { delay: 50 }); await sleep(250); }
    assert.ok(onBackOffice(a) && onBackOffice(b), `both tabs still in the back office: ${a.url()} ${b.url()}`);

    // Heartbeats per interval do not grow with tabs: both tabs busy for 8 s.
    const interval = 1000; // a quarter of the 4 s timeout
    const before = await heartbeatsAtServer(demo);
    const t0 = Date.now();
    await Promise.all([keepMoving(a, 8000, 200), keepMoving(b, 8000, 200)]);
    const sent = (await heartbeatsAtServer(demo)) - before;
    const intervals = (Date.now() - t0) / interval;
    assert.ok(sent <= Math.ceil(intervals) + 1, `${sent} heartbeats in ${intervals.toFixed(1)} intervals with two busy tabs`);
    assert.ok(sent >= 2, `heartbeats were sent at all (${sent})`);

    // Logging out in A takes B to the login page within a second.
    await Promise.all([a.waitForNavigation(), a.click('#logout')]);
    assert.ok(onLoginPage(a), `A on the login page, got ${a.url()}`);
    const took = await waitFor(() => onLoginPage(b), { timeoutMs: 3000, what: 'tab B on the login page' });
    assert.ok(took < 1000, `B followed within a second (${took} ms)`);
  }));
