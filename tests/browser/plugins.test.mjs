// The Plugins page: an admin grants a plugin its folder and enables it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, launch, newPage, login, shot } from './lib.mjs';

const built = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'plugins', 'target', 'backstop-plugins');
let server, browser, dataDir;
before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'backstop-plugins-'));
  // The first-party plugins come from the binary itself (nothing copied).
  server = await startServer({ BACKSTOP_BUNDLED_PLUGINS: '1' }, dataDir);
  browser = await launch();
});
after(async () => { await browser?.close(); await server?.stop(); server?.cleanup(); });

test('the bundled recordings plugin comes with its folder granted: enabling it is one click', async () => {
  const page = await newPage(browser);
  await login(page, server.base);
  await page.click('nav >> text=Plugins');
  for (const id of ['recordings', 'custom-dirs', 'space-guard']) {
    await page.locator(`section[data-plugin="${id}"]`).waitFor();
  }
  const card = page.locator('section[data-plugin="recordings"]');
  assert.equal((await card.locator('.badge').textContent()).trim(), 'disabled');
  assert.equal(await card.locator('#plugin-recordings-mount-recordings').inputValue(), join(dataDir, 'recordings'));
  await card.locator('#plugin-recordings-enabled').check();
  await card.locator('button[type="submit"]').click();
  await card.locator('text=Saved.').waitFor();
  assert.equal((await card.locator('.badge').textContent()).trim(), 'enabled');
  const api = await page.request.get(`${server.base}/api/backups/plugins/`);
  const rec = (await api.json()).plugins.find((p) => p.id === 'recordings');
  assert.equal(rec.enabled, true);
  assert.equal(rec.grants.mounts.recordings, join(dataDir, 'recordings'));
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('plugin settings are a form from the plugin\'s schema, checked field by field', async () => {
  const page = await newPage(browser);
  await login(page, server.base);
  await page.click('nav >> text=Plugins');
  const card = page.locator('section[data-plugin="custom-dirs"]');
  await card.waitFor();
  const field = card.locator('#plugin-custom-dirs-setting-directories');
  assert.equal((await field.inputValue()).trim(), '[]', 'the default from plugin.toml');
  // Bad JSON: the error is next to the field, nothing is sent.
  await field.fill('[{oops');
  await card.locator('button[type="submit"]').click();
  await card.locator('#plugin-custom-dirs-setting-directories-error >> text=/is not valid JSON/').waitFor();
  assert.equal(await field.getAttribute('aria-invalid'), 'true');
  let api = await (await page.request.get(`${server.base}/api/backups/plugins/`)).json();
  assert.deepEqual(api.plugins.find((p) => p.id === 'custom-dirs').settings.directories, []);
  // A good value is saved and comes back from the API as JSON, not text.
  await card.locator('#plugin-custom-dirs-mount-root').fill(join(dataDir, 'logos'));
  await field.fill('[{"name": "nginx", "path": "etc/nginx"}]');
  await card.locator('button[type="submit"]').click();
  await card.locator('text=Saved.').waitFor();
  assert.equal(await field.getAttribute('aria-invalid'), 'false');
  api = await (await page.request.get(`${server.base}/api/backups/plugins/`)).json();
  assert.deepEqual(api.plugins.find((p) => p.id === 'custom-dirs').settings.directories, [{ name: 'nginx', path: 'etc/nginx' }]);
  assert.deepEqual(page.errors, []);
  await shot(page, 'plugins-desktop-light');
  await page.context().close();
});

test('an admin grants a plugin a longer time limit; a bad limit is refused in place', async () => {
  const page = await newPage(browser);
  await login(page, server.base);
  await page.click('nav >> text=Plugins');
  const card = page.locator('section[data-plugin="custom-dirs"]');
  await card.waitFor();
  const timeout = card.locator('#plugin-custom-dirs-limit-timeout_ms');
  assert.equal(await timeout.getAttribute('placeholder'), 'now 2000', 'the limit from plugin.toml');
  await timeout.fill('0');
  await card.locator('button[type="submit"]').click();
  await card.locator('#plugin-custom-dirs-limit-timeout_ms-error >> text=/whole number above 0/').waitFor();
  let api = await (await page.request.get(`${server.base}/api/backups/plugins/`)).json();
  assert.equal(api.plugins.find((p) => p.id === 'custom-dirs').limits.timeout_ms, 2000, 'nothing saved');
  await timeout.fill('4500');
  await card.locator('button[type="submit"]').click();
  await card.locator('text=Saved.').waitFor();
  api = await (await page.request.get(`${server.base}/api/backups/plugins/`)).json();
  const p = api.plugins.find((p) => p.id === 'custom-dirs');
  assert.equal(p.grants.limits.timeout_ms, 4500);
  assert.equal(p.limits.timeout_ms, 4500, 'calls now run under the granted limit');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('an admin installs a plugin by uploading its two files; a wrong file is refused with the reason', async () => {
  const page = await newPage(browser);
  await login(page, server.base);
  await page.click('nav >> text=Plugins');
  await page.locator('section[data-plugin="recordings"]').waitFor();
  const echo = join(built, 'fixture-echo');
  // The component given as the manifest: refused, nothing installed.
  await page.setInputFiles('#install-manifest', join(echo, 'plugin.wasm'));
  await page.setInputFiles('#install-component', join(echo, 'plugin.wasm'));
  await page.click('#install-plugin');
  await page.locator('#install-status .error').waitFor();
  assert.match(await page.textContent('#install-status'), /manifest|UTF-8|TOML/i);
  assert.equal(await page.locator('section[data-plugin="fixture-echo"]').count(), 0);
  // The right files: installed, listed, disabled.
  await page.setInputFiles('#install-manifest', join(echo, 'plugin.toml'));
  await page.click('#install-plugin');
  await page.locator('#install-status >> text=/Installed .*enable it below/').waitFor();
  const card = page.locator('section[data-plugin="fixture-echo"]');
  await card.waitFor();
  assert.equal((await card.locator('.badge').textContent()).trim(), 'disabled');
  assert.deepEqual(page.errors.filter((e) => !/status of 400/.test(e)), []);
  await page.context().close();
});

test('a job shows what its plugins logged, in its details', async () => {
  const page = await newPage(browser);
  await login(page, server.base);
  await page.click('nav >> text=Backups');
  // The recordings plugin (enabled above) logs that a backup without recordings leaves them out.
  const box = page.locator('#run-include-recordings');
  if (await box.isChecked()) await box.click();
  await page.click('#run-backup');
  await page.waitForSelector('.run .status-line >> text=/Backup job \\d+ queued/');
  const id = Number((await page.textContent('.run .status-line')).match(/Backup job (\d+) queued/)[1]);
  await page.waitForFunction(
    (id) => document.querySelector(`tr[data-job-id="${id}"] .badge`)?.textContent.trim() === 'succeeded',
    id,
    { timeout: 60000 },
  );
  await page.click(`tr[data-job-id="${id}"] button[aria-label="Details of job ${id}"]`);
  const log = page.locator(`tr[data-job-id="${id}"] + tr.details-row section.plugin-log`);
  const line = log.locator('li', { hasText: 'recordings are not included in this backup' });
  await line.waitFor();
  assert.equal((await line.locator('.log-plugin').textContent()).trim(), 'recordings');
  assert.equal((await line.locator('.log-level').textContent()).trim(), 'info');
  // The same lines as the API's.
  const api = await page.request.get(`${server.base}/api/backups/jobs/${id}/plugin-log/`);
  const lines = (await api.json()).lines;
  assert.equal(await log.locator('li').count(), lines.length);
  assert.deepEqual(page.errors, []);
  await shot(page, 'plugin-log-desktop-light');
  await page.context().close();
});
