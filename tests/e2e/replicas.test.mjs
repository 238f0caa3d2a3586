// Several sidecar replicas: three `session-timeout serve` processes on one
// real PostgreSQL (a throwaway cluster from Debian's packages, started here
// by scripts/pg-throwaway.sh), behind real nginx with the shipped site and
// round-robin over the three; the ERP stand-in behind it; real Chromium.
// The browser scenarios 1, 2 and 6 of client.test.mjs must hold unchanged
// whichever replica each request reaches.
// Without a PostgreSQL server: SKIPPED (failed instead with CI=true).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, startDemo, launch, heartbeatsAtServer } from './harness.mjs';
import { freePort, spawnLogged, untilReady, startNginx } from './proxy-harness.mjs';
import { idleUserLandsOnLogin, activeUserStaysLoggedIn, twoTabsActAsOne } from './scenarios.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PG = path.join(ROOT, 'scripts/pg-throwaway.sh');
const TIMEOUT_S = 4;

const havePostgres = () => {
  try {
    return readdirSync('/usr/lib/postgresql').some((v) => existsSync(`/usr/lib/postgresql/${v}/bin/initdb`));
  } catch { return false; }
};
const skip = havePostgres() ? false : 'no PostgreSQL server under /usr/lib/postgresql (make tools installs it)';
if (skip && process.env.CI === 'true') throw new Error(`replica tests cannot run on CI: ${skip}`);
if (skip) console.log(`SKIPPED: ${skip}`);

let browser;
let pgDir;
let pgUrl;
let databases = 0;
before(async () => {
  if (skip) return;
  pgDir = mkdtempSync(path.join(tmpdir(), 'st-replicas-pg-'));
  pgUrl = execFileSync(PG, ['start', path.join(pgDir, 'pg'), String(await freePort())]).toString().trim();
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (pgDir) {
    execFileSync(PG, ['remove', path.join(pgDir, 'pg')]);
    rmSync(pgDir, { recursive: true, force: true });
  }
});

/** A fresh database on the cluster for one test. */
function freshDatabase() {
  const name = `replicas_${process.pid}_${++databases}`;
  execFileSync(PG, ['psql', path.join(pgDir, 'pg'), `CREATE DATABASE ${name}`]);
  return pgUrl.replace(/\/postgres$/, `/${name}`);
}

/** ERP stand-in, three replicas sharing one database and one secret, nginx in front. */
async function withReplicas(fn) {
  const dir = mkdtempSync(path.join(tmpdir(), 'st-replicas-'));
  const started = [];
  const logs = () => started.map((s) => s.log()).join('\n').slice(-12000);
  try {
    const erp = await startDemo({ timeout: TIMEOUT_S, extraArgs: ['--no-enforce'] });
    started.push({ log: () => `--- erp ---\n${erp.log()}`, stop: () => erp.stop() });
    const secret = path.join(dir, 'secret');
    writeFileSync(secret, randomBytes(32).toString('hex'), { mode: 0o600 });
    const database = freshDatabase();
    const replicas = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const p = spawnLogged(`replica ${i}`, BIN, ['serve', '--bind', `127.0.0.1:${port}`,
        '--database-url', database, '--secret-file', secret, '--timeout', String(TIMEOUT_S),
        '--session-info-url', `${erp.url}/web/session/get_session_info`],
      { env: { ...process.env, RUST_LOG: 'info' } });
      started.push(p);
      const url = `http://127.0.0.1:${port}`;
      await untilReady(p, async () => (await fetch(`${url}/session-timeout/healthz`)).status === 200, `replica ${i}`);
      replicas.push({ url, metrics: `${url}/session-timeout/metrics` });
    }
    const nginx = await startNginx({
      dir: path.join(dir, 'nginx'), erpPort: Number(new URL(erp.url).port), sidecarPort: replicas.map((r) => Number(new URL(r.url).port)),
    });
    started.push(nginx);
    // What the browser scenarios see as "the server": nginx in front, and
    // the heartbeats counted over every replica.
    const demo = { url: nginx.url, timeoutMs: TIMEOUT_S * 1000, metricsUrls: replicas.map((r) => r.metrics) };
    const context = await browser.newContext();
    const dialogs = [];
    try {
      await fn({ demo, context, dialogs, replicas });
      assert.deepEqual(dialogs, [], 'no dialog of any kind appears');
    } finally {
      await context.close();
    }
  } catch (e) {
    e.message += `\n${logs()}`;
    throw e;
  } finally {
    for (const s of started.reverse()) await s.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/** How many of the replicas received heartbeats: round-robin must have spread them. */
async function replicasWithHeartbeats(replicas) {
  let n = 0;
  for (const r of replicas) if (await heartbeatsAtServer({ metricsUrls: [r.metrics] }) > 0) n++;
  return n;
}

test('nginx + 3 replicas on PostgreSQL 1. an idle internal user lands on the login page about when the session expires', { skip }, () =>
  withReplicas(async (s) => {
    await idleUserLandsOnLogin(s);
  }));

test('nginx + 3 replicas on PostgreSQL 2. a user who keeps moving the mouse or typing stays logged in for several timeouts', { skip }, () =>
  withReplicas(async (s) => {
    await activeUserStaysLoggedIn(s);
    assert.ok(await replicasWithHeartbeats(s.replicas) >= 2, 'heartbeats reached more than one replica');
  }));

test('nginx + 3 replicas on PostgreSQL 6. two tabs act as one: activity in one keeps both, logout in one reaches the other, one heartbeat stream', { skip }, () =>
  withReplicas(async (s) => {
    await twoTabsActAsOne(s);
    assert.ok(await replicasWithHeartbeats(s.replicas) >= 2, 'heartbeats reached more than one replica');
  }));
