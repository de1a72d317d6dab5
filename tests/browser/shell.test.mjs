// The shell: sign in, see the Backups page hydrated, the Data page, the viewer message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, hydrated, login, shot } from './lib.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launch(); });
after(async () => { await browser?.close(); await server?.stop(); server?.cleanup(); });

test('signing in lands on a hydrated Backups page', async () => {
  const page = await newPage(browser);
  await login(page, server.base);
  await page.waitForSelector('h1:has-text("Backups")');
  await page.waitForSelector('#run-backup');
  assert.match(await page.textContent('.user-menu'), /admin/);
  assert.deepEqual(page.errors, []);
  await shot(page, 'backups-desktop-light');
  await page.context().close();
});

test('wrong password shows the error next to the form', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.base}/login`);
  await hydrated(page);
  await page.fill('#username', 'admin');
  await page.fill('#password', 'definitely-wrong');
  await page.click('button[type="submit"]');
  await page.waitForSelector('#login-error');
  assert.equal((await page.textContent('#login-error')).trim(), 'wrong username or password');
  assert.equal(new URL(page.url()).pathname, '/login');
  await page.context().close();
});

test('the Data page lists tables with row counts and reveals rows on a click (needs hydration)', async () => {
  const page = await newPage(browser);
  await login(page, server.base);
  await page.click('nav >> text=Data');
  await page.waitForSelector('tr[data-table="channels"]');
  const rows = Number(await page.getAttribute('tr[data-table="channels"] td.num', 'data-rows'));
  assert.ok(rows > 0, 'channels has rows');
  assert.equal(await page.locator('table.sample').count(), 0);
  await page.click('tr[data-table="channels"] button:has-text("Show rows")');
  await page.waitForSelector('table.sample');
  assert.match(await page.textContent('table.sample'), /channel_number/);
  // Secrets arrive masked: the Xtream account's password and every user's API key.
  await page.click('tr[data-table="m3u_accounts"] button:has-text("Show rows")');
  await page.click('tr[data-table="users"] button:has-text("Show rows")');
  await page.waitForSelector('table.sample >> text=Xtream Provider');
  const samples = (await page.locator('table.sample').allTextContents()).join('\n');
  assert.match(samples, /•••/);
  assert.doesNotMatch(samples, /demo-password|demo-key-/);
  assert.doesNotMatch(await page.content(), /demo-password|demo-key-/, 'never sent to the browser');
  assert.match(await page.textContent('#data-note'), /shown as •••/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a viewer sees table names and row counts on the Data page, but no rows', async () => {
  const r = server.cli(['user', 'create', 'dana', '--role', 'viewer'], 'viewer-password\n');
  assert.equal(r.status, 0, r.stderr);
  const page = await newPage(browser);
  await login(page, server.base, 'dana', 'viewer-password');
  await page.goto(`${server.base}/data`);
  await hydrated(page);
  await page.waitForSelector('tr[data-table="channels"] td.num');
  const rows = Number(await page.getAttribute('tr[data-table="channels"] td.num', 'data-rows'));
  assert.ok(rows > 0, 'channels has rows');
  assert.equal(await page.locator('button:has-text("Show rows")').count(), 0);
  assert.equal((await page.textContent('#data-note')).trim(), 'Row contents are shown to admins only.');
  assert.doesNotMatch(await page.content(), /channel_number|Xtream Provider|demo-password|demo-key-/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a viewer sees a clear "Admins only" message', async () => {
  const r = server.cli(['user', 'create', 'vera', '--role', 'viewer'], 'viewer-password\n');
  assert.equal(r.status, 0, r.stderr);
  const page = await newPage(browser);
  await page.goto(`${server.base}/login`);
  await hydrated(page);
  await page.fill('#username', 'vera');
  await page.fill('#password', 'viewer-password');
  await Promise.all([page.waitForURL(`${server.base}/backups`), page.click('button[type="submit"]')]);
  await page.waitForSelector('text=Admins only');
  assert.equal(await page.locator('#run-backup').count(), 0);
  await page.context().close();
});
