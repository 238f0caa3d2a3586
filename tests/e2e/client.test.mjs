// Issue #3 scenarios: real headless Chromium, the real wasm bundle, the real
// `session-timeout demo` server with a 4 s timeout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { idleUserLandsOnLogin, activeUserStaysLoggedIn, twoTabsActAsOne } from './scenarios.mjs';
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
    await idleUserLandsOnLogin({ demo, context, dialogs });
  }));

test('2. a user who keeps moving the mouse or typing stays logged in for several timeouts', () =>
  withDemo({ timeout: 4 }, async ({ demo, context, dialogs }) => {
    await activeUserStaysLoggedIn({ demo, context, dialogs });
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
    await twoTabsActAsOne({ demo, context, dialogs });
  }));

// The opt-in notice before a logout (warn_before_s), shown through the web
// client's notification service (the demo's stand-in for Odoo's).
const notice = (page) => page.locator('.o_notification');

test('7. notice on: shown before the deadline, "Stay signed in" or any input keeps the session, ignored it ends on the login page on time', () =>
  withDemo({ timeout: 6, extraArgs: ['--warn-before', '3'] }, async ({ demo, context, dialogs }) => {
    const page = await newPage(context, dialogs);
    await login(page, demo, 'admin');
    await clientReady(page);
    const cookie = await sessionCookie(context);
    const { remaining_ms: remaining } = await serverCheck(demo, cookie);
    // Shown about 3 s before the deadline, not before.
    const shownAfter = await waitFor(async () => (await notice(page).count()) === 1, { timeoutMs: remaining, what: 'the notice' });
    assert.ok(shownAfter >= remaining - 3000 - 600, `not shown too early (${shownAfter} ms of ${remaining})`);
    assert.match(await notice(page).innerText(), /signed out in [1-3] seconds/);
    assert.equal(await page.locator('dialog, [role=dialog]').count(), 0, 'a notice, not a dialog');
    // The button counts as activity (clicked without moving the mouse: a
    // move alone is input, which takes the notice down before any click).
    await page.locator('.o_notification button').evaluate((b) => b.click());
    await waitFor(async () => (await notice(page).count()) === 0, { timeoutMs: 2000, what: 'the notice to go' });
    await waitFor(async () => (await serverCheck(demo, cookie)).remaining_ms > 4000, { timeoutMs: 3000, what: 'the session extended by the button' });
    assert.ok(onBackOffice(page), 'still in the back office');
    // Shown again; any real input takes it down and keeps the session too.
    let { remaining_ms: left } = await serverCheck(demo, cookie);
    await waitFor(async () => (await notice(page).count()) === 1, { timeoutMs: left, what: 'the notice again' });
    await page.mouse.move(50, 300, { steps: 2 });
    await waitFor(async () => (await notice(page).count()) === 0, { timeoutMs: 2000, what: 'the notice to go on input' });
    await waitFor(async () => (await serverCheck(demo, cookie)).remaining_ms > 4000, { timeoutMs: 3000, what: 'the session extended by input' });
    // Ignored this time: shown again, then the login page on time.
    ({ remaining_ms: left } = await serverCheck(demo, cookie));
    await waitFor(async () => (await notice(page).count()) === 1, { timeoutMs: left, what: 'the notice a third time' });
    const took = await waitFor(() => onLoginPage(page), { timeoutMs: 6000, what: 'the login page' });
    assert.ok(took < 3000 + 1500, `on the login page about when the session ended (${took} ms after the notice)`);
    assert.equal(await serverAuth(demo, cookie), 401);
  }));

test('8. notice off (the default): nothing is shown before the logout', () =>
  withDemo({ timeout: 4 }, async ({ demo, context, dialogs }) => {
    const page = await newPage(context, dialogs);
    await login(page, demo, 'admin');
    await clientReady(page);
    let seen = 0;
    const end = Date.now() + 8000;
    while (Date.now() < end && !onLoginPage(page)) {
      seen += await notice(page).count();
      await sleep(200);
    }
    assert.ok(onLoginPage(page), 'logged out on time');
    assert.equal(seen, 0, 'no notice at any point');
  }));
