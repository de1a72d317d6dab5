// Test support: start the real backstop server on a free port with a fresh data dir, and
// Debian's headless Chromium through playwright-core.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ADMIN_PASSWORD = 'correct-horse-battery';
const here = dirname(fileURLToPath(import.meta.url));
export const OUTPUT = join(here, 'output');
mkdirSync(OUTPUT, { recursive: true });

const target = process.env.CARGO_TARGET_DIR || '/var/tmp/backstop-target';
export const BIN = process.env.BACKSTOP_BIN || join(target, 'debug', 'backstop');
const SITE = process.env.BACKSTOP_SITE_DIR || join(target, 'site');

/** A TCP port that was free a moment ago (for a server that must come back on the same one). */
export async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts a server; resolves to { base, dataDir, stop(), env }. */
export async function startServer(extraEnv = {}, dataDir = null, bind = '127.0.0.1:0') {
  dataDir = dataDir || mkdtempSync(join(tmpdir(), 'backstop-browser-'));
  const env = {
    PATH: process.env.PATH,
    BACKSTOP_DATA_DIR: dataDir,
    BACKSTOP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    BACKSTOP_SITE_DIR: SITE,
    RUST_LOG: process.env.TEST_RUST_LOG || 'warn',
    // The bundled first-party plugins are installed only where a test asks for them.
    BACKSTOP_BUNDLED_PLUGINS: '0',
    ...extraEnv,
  };
  const child = spawn(BIN, ['serve', '--bind', bind], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const base = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('server did not start in 60 s')), 60000);
    child.stdout.on('data', (d) => {
      buf += d.toString();
      const m = buf.match(/backstop listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
  return {
    base, dataDir, env,
    async stop() {
      if (child.exitCode !== null) return;
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await done;
    },
    cli(args, input) {
      return spawnSync(BIN, args, { env, input, encoding: 'utf8' });
    },
    cleanup() { rmSync(dataDir, { recursive: true, force: true }); },
  };
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A page that fails the test on any console error or page error. */
export async function newPage(browser, opts = {}) {
  const context = await browser.newContext({ acceptDownloads: true, ...opts });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  return page;
}

/** Waits until the Leptos app has hydrated (the App sets body[data-hydrated]). */
export async function hydrated(page) {
  await page.waitForSelector('body[data-hydrated="true"]', { timeout: 30000 });
}

export async function login(page, base, user = 'admin', password = ADMIN_PASSWORD) {
  await page.goto(`${base}/login`);
  await hydrated(page);
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([
    page.waitForURL(`${base}/backups`, { timeout: 30000 }),
    page.click('button[type="submit"]'),
  ]);
  await hydrated(page);
}

export async function shot(page, name) {
  await page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
}

/** Clicks Run Backup (first setting "include recordings" when `recordings` is given) and
 * returns the new job's id, read from the status line. */
export async function runBackup(page, { recordings } = {}) {
  if (recordings !== undefined) {
    const box = page.locator('#run-include-recordings');
    if ((await box.isChecked()) !== recordings) await box.click();
  }
  const before = await page.textContent('.run .status-line');
  await page.click('#run-backup');
  await page.waitForFunction(
    (before) => {
      const t = document.querySelector('.run .status-line')?.textContent ?? '';
      return t !== before && /Backup job \d+ queued/.test(t);
    },
    before,
  );
  return Number((await page.textContent('.run .status-line')).match(/Backup job (\d+) queued/)[1]);
}

/** Waits until job `id`'s status badge in the history says `status`. */
export async function waitForStatus(page, id, status, timeout = 60000) {
  await page.waitForFunction(
    ([id, status]) => document.querySelector(`tr[data-job-id="${id}"] .badge`)?.textContent.trim() === status,
    [id, status],
    { timeout },
  );
}
