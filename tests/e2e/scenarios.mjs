// Browser scenarios shared by the single-server tests (client.test.mjs,
// against `session-timeout demo`) and the replica tests (replicas.test.mjs,
// three sidecars on PostgreSQL behind nginx): the same user-visible promises
// whatever serves them. `demo` is anything with the harness's server shape:
// `url` (where the browser goes) and, for the heartbeat count,
// `metricsUrls` when several servers share the load.
import assert from 'node:assert/strict';
import {
  newPage, login, sessionCookie, serverCheck, serverAuth, heartbeatsAtServer,
  waitFor, onLoginPage, onBackOffice, keepMoving, clientReady, sleep,
} from './harness.mjs';

export async function idleUserLandsOnLogin({ demo, context, dialogs }) {
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
}

export async function activeUserStaysLoggedIn({ demo, context, dialogs }) {
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
}

export async function twoTabsActAsOne({ demo, context, dialogs }) {
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
}
