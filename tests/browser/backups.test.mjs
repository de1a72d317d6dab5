// The Backups page, driven the way a person uses it: settings (valid and invalid), Run
// Backup watched live, cancel, delete, download, upload + restore, a failed job's error,
// a second browser seeing the first one's job, keyboard use, and screenshots.
//
// One server for the whole file; the tests run in order and build on each other (the
// archive downloaded in one is uploaded in the next).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startServer, launch, newPage, hydrated, login, shot, runBackup, waitForStatus } from './lib.mjs';

let server, browser, work;
/** The archive downloaded by the download test, uploaded by the restore test. */
let downloaded;

// Large, poorly compressible recordings so a backup that includes them runs for seconds:
// long enough to watch its progress bar move and to stop it.
const RECORDING_FILES = 4;
const RECORDING_MIB = 300;

before(async () => {
  server = await startServer();
  browser = await launch();
  work = mkdtempSync(join(tmpdir(), 'backstop-browser-work-'));
});
after(async () => {
  await browser?.close();
  await server?.stop();
  server?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

function writeRecordings() {
  const dir = join(server.dataDir, 'recordings');
  mkdirSync(dir, { recursive: true });
  const block = randomBytes(1 << 20);
  for (let f = 0; f < RECORDING_FILES; f++) {
    const path = join(dir, `big-${f}.ts`);
    // Appended 16 MiB at a time rather than built as one 300 MB buffer.
    writeFileSync(path, '');
    const chunk = Buffer.concat(Array(16).fill(block)); // 16 MiB
    for (let i = 0; i < RECORDING_MIB / 16; i++) writeFileSync(path, chunk, { flag: 'a' });
  }
}

function removeRecordings() {
  const dir = join(server.dataDir, 'recordings');
  for (const f of readdirSync(dir)) if (f.startsWith('big-')) unlinkSync(join(dir, f));
}

function archives() {
  const dir = join(server.dataDir, 'backups');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.tar.gz')) : [];
}

/** The text of job `id`'s status badge. */
async function badge(page, id) {
  return (await page.textContent(`tr[data-job-id="${id}"] .badge`))?.trim();
}

/** Records every status badge text and progress value as they change, per job id. */
async function watchRows(page) {
  await page.evaluate(() => {
    window.__seen = {};
    window.__progress = {};
    const scan = () => {
      for (const tr of document.querySelectorAll('tr[data-job-id]')) {
        const id = tr.dataset.jobId;
        const text = tr.querySelector('.badge')?.textContent.trim();
        const seen = (window.__seen[id] ||= []);
        if (text && seen[seen.length - 1] !== text) seen.push(text);
        const bar = tr.querySelector('[role="progressbar"]');
        if (bar) {
          const p = (window.__progress[id] ||= []);
          const v = bar.getAttribute('aria-valuenow');
          if (p[p.length - 1] !== v) p.push(v);
        }
      }
    };
    scan();
    new MutationObserver(scan).observe(document.querySelector('table.jobs'), {
      subtree: true, childList: true, characterData: true, attributes: true,
    });
  });
}

/** Where the history's columns are and how tall job `id`'s row is, in whole pixels. */
async function geometry(page, id) {
  return page.evaluate((id) => ({
    columns: [...document.querySelectorAll('table.jobs th')].map((th) => Math.round(th.getBoundingClientRect().left)),
    row: Math.round(document.querySelector(`tr[data-job-id="${id}"]`).getBoundingClientRect().height),
  }), id);
}

async function settingsFromApi(page) {
  const r = await page.request.get(`${server.base}/api/backups/settings/`);
  assert.equal(r.status(), 200);
  return r.json();
}

/** Row counts per table as the Data page shows them. */
async function dataPageCounts(page) {
  await page.goto(`${server.base}/data`);
  await page.waitForSelector('tr[data-table] td.num');
  return page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll('tr[data-table]')].map((tr) => [tr.dataset.table, Number(tr.querySelector('td.num').dataset.rows)]),
  ));
}

async function adminPage(opts = {}) {
  const page = await newPage(browser, opts);
  await login(page, server.base);
  await page.waitForSelector('#save-settings');
  return page;
}

test('saving valid settings shows the schedule in plain words and the next run in local time', async () => {
  const page = await adminPage({ timezoneId: 'America/New_York' });
  await page.selectOption('#settings-frequency', 'daily');
  await page.fill('#settings-time', '03:00');
  await page.fill('#settings-timezone', 'Europe/London');
  await page.fill('#settings-retention', '10');
  await page.waitForSelector('.unsaved:has-text("Unsaved changes")');
  await page.click('#save-settings');
  await page.waitForSelector('.form-actions [role="status"]:has-text("Settings saved.")');
  assert.equal((await page.textContent('.unsaved')).trim(), '', 'the unsaved mark goes away');
  const preview = await page.textContent('#next-run');
  assert.match(preview, /Daily at 03:00 Europe\/London/);
  assert.match(preview, /next run/);
  // The next run is shown in the browser's zone: 03:00 London is 22:00 or 23:00 in New York.
  const when = await page.getAttribute('#next-run time', 'datetime');
  assert.ok(when, 'the next run has a machine-readable time');
  assert.match(await page.textContent('#next-run time'), /(10|11):00|2[23]:00/);
  const saved = await settingsFromApi(page);
  assert.equal(saved.schedule.frequency, 'daily');
  assert.equal(saved.schedule.enabled, true);
  assert.equal(saved.schedule.timezone, 'Europe/London');
  assert.equal(saved.retention_count, 10);
  assert.ok(saved.next_run_at);
  // Still there after a reload, already in the server's HTML (before hydration).
  await page.reload();
  await page.waitForSelector('#save-settings');
  assert.equal(await page.inputValue('#settings-time'), '03:00');
  assert.equal(await page.inputValue('#settings-timezone'), 'Europe/London');
  await hydrated(page);
  assert.equal(await page.inputValue('#settings-frequency'), 'daily');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('bad settings show an error next to each field and save nothing', async () => {
  const page = await adminPage();
  const before = await settingsFromApi(page);
  await page.fill('#settings-time', '25:00');
  await page.fill('#settings-timezone', 'Mars/Olympus_Mons');
  await page.fill('#settings-retention', '-3');
  await page.click('#save-settings');
  await page.waitForSelector('text=Nothing was saved');
  // Each message sits in the same field as its input, and the input is marked invalid.
  for (const [input, pattern] of [
    ['#settings-time', /time|HH:MM|hour/i],
    ['#settings-timezone', /zone/i],
    ['#settings-retention', /whole number/i],
  ]) {
    const field = page.locator('.field', { has: page.locator(input) });
    const msg = field.locator('.field-error');
    assert.ok(await msg.isVisible(), `an error is shown next to ${input}`);
    assert.match(await msg.textContent(), pattern);
    assert.equal(await page.getAttribute(input, 'aria-invalid'), 'true');
  }
  assert.match(await page.textContent('.unsaved'), /Unsaved changes/);
  assert.deepEqual(await settingsFromApi(page), before, 'nothing was saved');
  await shot(page, 'settings-errors-desktop-light');
  // Fixing one field clears only after saving again; a valid save clears every message.
  await page.fill('#settings-time', '04:30');
  await page.fill('#settings-timezone', 'UTC');
  await page.fill('#settings-retention', '10');
  await page.click('#save-settings');
  await page.waitForSelector('text=Settings saved.');
  assert.equal(await page.locator('.field-error').count(), 0);
  assert.match(await page.textContent('#next-run'), /Daily at 04:30 UTC/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a backup goes pending -> running -> succeeded with a moving progress bar', async () => {
  writeRecordings();
  const page = await adminPage();
  await watchRows(page);
  const id = await runBackup(page, { recordings: true });
  await waitForStatus(page, id, 'running');
  await page.waitForSelector(`tr[data-job-id="${id}"] [role="progressbar"]`);
  await page.waitForFunction((id) => Number(document.querySelector(`tr[data-job-id="${id}"] [role="progressbar"]`)?.getAttribute('aria-valuenow')) > 0, id);
  await shot(page, 'backups-running-desktop-light');
  const runningGeometry = await geometry(page, id);
  assert.match(await page.textContent(`tr[data-job-id="${id}"] .progress-label`), /archive|dump|collect|[KMG]iB/);
  await waitForStatus(page, id, 'succeeded', 120000);
  const seen = await page.evaluate((id) => window.__seen[id], id);
  assert.deepEqual(seen, ['pending', 'running', 'succeeded']);
  assert.deepEqual(await geometry(page, id), runningGeometry, 'no layout jump when the status changes');
  const progress = (await page.evaluate((id) => window.__progress[id], id)).map(Number);
  assert.ok(new Set(progress.filter((p) => p > 0)).size >= 2, `the bar moved: ${progress}`);
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i] >= progress[i - 1] || progress[i] === 0, `never backwards: ${progress}`);
  assert.match(await page.textContent(`tr[data-job-id="${id}"] td[data-label="Size"]`), /[MG]iB/);
  assert.match(await page.textContent(`tr[data-job-id="${id}"] td[data-label="By"]`), /admin/);
  assert.equal(await page.locator(`tr[data-job-id="${id}"] [role="progressbar"]`).count(), 0);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('deleting a backup asks first, then removes the row and the file', async () => {
  const page = await adminPage();
  const row = page.locator('tr[data-job-id]').filter({ has: page.locator('.badge:text-is("succeeded")') }).first();
  const id = await row.getAttribute('data-job-id');
  const name = (await row.locator('.archive-name').textContent()).trim();
  assert.ok(archives().includes(name), 'the archive exists before');
  await row.locator('button[aria-label^="Delete"]').click();
  const dialog = page.locator('.modal[role="dialog"]');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /deleted for good/);
  // Backing out changes nothing.
  await dialog.locator('button:text-is("Back")').click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await page.locator(`tr[data-job-id="${id}"]`).count(), 1);
  await row.locator('button[aria-label^="Delete"]').click();
  await dialog.locator('button:text-is("Delete")').click();
  await page.waitForSelector(`tr[data-job-id="${id}"]`, { state: 'detached' });
  await page.waitForSelector(`.run .status-line:has-text("Job ${id} deleted")`);
  assert.ok(!archives().includes(name), 'the archive file is gone');
  const r = await page.request.get(`${server.base}/api/backups/jobs/${id}/`);
  assert.equal(r.status(), 404);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('stopping a long backup asks first and ends it as canceled with no file left', async () => {
  const page = await adminPage();
  const before = archives();
  const id = await runBackup(page, { recordings: true });
  await waitForStatus(page, id, 'running');
  await page.click(`tr[data-job-id="${id}"] button[aria-label="Stop job ${id}"]`);
  const dialog = page.locator('.modal[role="dialog"]');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /Stop this job\?/);
  await dialog.locator('button:text-is("Stop")').click();
  await waitForStatus(page, id, 'canceled');
  assert.equal(await page.locator(`tr[data-job-id="${id}"] button[aria-label^="Stop"]`).count(), 0);
  assert.deepEqual(archives(), before, 'a stopped backup leaves no file');
  assert.deepEqual(page.errors, []);
  await page.context().close();
  removeRecordings();
});

test('a second browser sees a job started in the first one appear and finish without a reload', async () => {
  const watcher = await adminPage();
  await watcher.evaluate(() => { window.__sameDocument = true; });
  await watchRows(watcher);
  const actor = await adminPage();
  const id = await runBackup(actor, { recordings: false });
  await watcher.waitForSelector(`tr[data-job-id="${id}"]`);
  await waitForStatus(watcher, id, 'succeeded');
  assert.equal(await watcher.evaluate(() => window.__sameDocument), true, 'no reload happened');
  const seen = await watcher.evaluate((id) => window.__seen[id], id);
  assert.equal(seen[seen.length - 1], 'succeeded');
  assert.match(await watcher.textContent('.history .count'), /\d+ jobs/);
  assert.deepEqual(watcher.errors, []);
  assert.deepEqual(actor.errors, []);
  await watcher.context().close();
  await actor.context().close();
});

test('downloading a backup gives a gzip tar that starts with manifest.json', async () => {
  const page = await adminPage();
  const id = await runBackup(page, { recordings: false });
  await waitForStatus(page, id, 'succeeded');
  const link = page.locator(`tr[data-job-id="${id}"] a[aria-label^="Download"]`);
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  assert.match(download.suggestedFilename(), /\.tar\.gz$/);
  downloaded = join(work, download.suggestedFilename());
  await download.saveAs(downloaded);
  const entries = execFileSync('tar', ['tzf', downloaded], { encoding: 'utf8' }).trim().split('\n');
  assert.equal(entries[0], 'manifest.json');
  assert.ok(entries.some((e) => e.startsWith('data/logos/')), `holds the logos: ${entries.slice(0, 5)}`);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('uploading an archive shows its manifest, and confirming restores the old data', async () => {
  assert.ok(downloaded, 'the download test ran first');
  const page = await adminPage();
  const oldCounts = await dataPageCounts(page);
  assert.ok(oldCounts.channels > 2);
  // Change the data behind the app's back: fewer channels, a logo file gone.
  execFileSync('sqlite3', [join(server.dataDir, 'app.db'), 'DELETE FROM channels WHERE id > 2;']);
  const logo = join(server.dataDir, 'logos', readdirSync(join(server.dataDir, 'logos')).sort()[0]);
  unlinkSync(logo);
  const changed = await dataPageCounts(page);
  assert.equal(changed.channels, 2, 'the Data page shows the change');

  await page.goto(`${server.base}/backups`);
  await page.waitForSelector('#save-settings');
  await page.setInputFiles('#upload-input', downloaded);
  const summary = page.locator('#manifest-summary');
  // The review dialog, or the refusal dialog with the server's reason (said, not timed out).
  const outcome = page.locator('#manifest-summary, [aria-labelledby="upload-failed-title"]');
  await outcome.first().waitFor({ timeout: 60000 });
  assert.ok(await summary.isVisible(), `the upload was refused: ${await outcome.first().textContent()}`);
  const text = await summary.textContent();
  assert.match(text, /Restore this archive\?/);
  assert.match(text, /App version/);
  assert.match(text, /\d+ tables, \d+ rows/);
  assert.match(text, /logos \(\d+ files/);
  assert.match(text, /not included/, 'says it holds no recordings');
  assert.match(text, /safety backup/);
  await shot(page, 'upload-review-desktop-light');
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'upload-review-phone-light');
  await page.setViewportSize({ width: 1280, height: 720 });
  await page.click('#confirm-restore');
  await page.waitForSelector('.run .status-line:has-text("Restore job")');
  const rid = Number((await page.textContent('.run .status-line')).match(/Restore job (\d+)/)[1]);
  await waitForStatus(page, rid, 'succeeded', 120000);
  assert.match(await page.textContent(`tr[data-job-id="${rid}"] td[data-label="Type"]`), /Restore/);
  // The safety backup taken first is in the history too.
  assert.ok(await page.locator('tr[data-job-id] td[data-label="Trigger"]:has-text("Safety")').count() >= 1);
  assert.deepEqual(page.errors, []);

  assert.deepEqual(await dataPageCounts(page), oldCounts, 'the Data page is back to the old counts');
  assert.ok(existsSync(logo), 'the deleted logo is back');
  await page.context().close();
});

test("a failed job shows its error on hover, on focus and in its details row", async () => {
  const page = await adminPage();
  // A real failure: the backup folder becomes a regular file after the settings were saved.
  await page.fill('#settings-path', 'broken-destination');
  await page.click('#save-settings');
  await page.waitForSelector('text=Settings saved.');
  const broken = join(server.dataDir, 'broken-destination');
  rmSync(broken, { recursive: true, force: true });
  writeFileSync(broken, 'not a folder');

  const id = await runBackup(page, { recordings: false });
  await waitForStatus(page, id, 'failed');
  const failed = page.locator(`tr[data-job-id="${id}"] .badge`);
  const tooltip = () => failed.evaluate((el) => getComputedStyle(el, '::after').content);
  await failed.hover();
  assert.match(await tooltip(), /broken-destination/, 'the error shows on hover');
  await page.mouse.move(0, 0);
  assert.equal(await tooltip(), 'none');
  await failed.focus();
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Tab'); // keyboard focus, so :focus-visible applies
  assert.match(await tooltip(), /broken-destination/, 'the error shows on keyboard focus');
  await shot(page, 'failed-tooltip-desktop-light');

  const details = page.locator(`tr[data-job-id="${id}"] button[aria-label="Details of job ${id}"]`);
  assert.equal(await details.getAttribute('aria-expanded'), 'false');
  await details.click();
  assert.equal(await details.getAttribute('aria-expanded'), 'true');
  const row = page.locator(`tr[data-job-id="${id}"] + tr.details-row`);
  await row.waitFor();
  assert.match(await row.textContent(), /Error: .*broken-destination/);
  assert.deepEqual(page.errors, []);

  // Put things back for the tests after this one.
  await page.fill('#settings-path', 'backups');
  await page.click('#save-settings');
  await page.waitForSelector('text=Settings saved.');
  rmSync(broken, { force: true });
  await page.context().close();
});

test('keyboard only: Tab reaches the actions, Escape closes a dialog and focus returns', async () => {
  const page = await adminPage();
  // Tab from the Run Backup button reaches a row's action buttons without a mouse.
  await page.focus('#run-backup');
  let reached = null;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.getAttribute('aria-label')?.startsWith('Delete') ? document.activeElement.getAttribute('aria-label') : null);
  }
  assert.ok(reached, 'a Delete button is reachable by Tab');
  await page.keyboard.press('Enter');
  const dialog = page.locator('.modal[role="dialog"]');
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.textContent.trim()), 'Delete', 'the confirm button has focus');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), reached, 'focus is back on the button that opened it');
  // The focus ring is visible.
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none');
  // Tab stays inside an open dialog.
  await page.keyboard.press('Enter');
  await dialog.waitFor();
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press('Tab');
    assert.ok(await page.evaluate(() => !!document.activeElement?.closest('.modal')), 'focus stays in the dialog');
  }
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  // Escape on the upload review keeps the archive for later; focus returns to Upload Archive.
  if (downloaded) {
    await page.setInputFiles('#upload-input', downloaded);
    await page.locator('#manifest-summary').waitFor({ timeout: 60000 });
    assert.ok(await page.evaluate(() => !!document.activeElement?.closest('#manifest-summary')), 'focus moved into the review');
    await page.keyboard.press('Escape');
    await page.locator('#manifest-summary').waitFor({ state: 'detached' });
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('for')), 'upload-input');
  }
  // The upload button opens the file picker from the keyboard.
  // (Enter, then Space: both are handled; headless Chromium now and then drops the first
  // programmatic picker right after a dialog closed, seen once in CI.)
  // Three rounds of Enter and Space, focusing the button again each time: one opened
  // picker is the proof; a broken handler fails all six.
  let chooser = null;
  for (let round = 0; round < 3 && !chooser; round++) {
    for (const key of ['Enter', ' ']) {
      await page.focus('label[for="upload-input"]');
      [chooser] = await Promise.all([
        page.waitForEvent('filechooser', { timeout: 5000 }).catch(() => null),
        page.keyboard.press(key),
      ]);
      if (chooser) break;
    }
  }
  assert.ok(chooser, 'the file picker opens from the keyboard');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('screenshots: desktop and phone, light and dark, without horizontal overflow', async () => {
  for (const scheme of ['light', 'dark']) {
    for (const [label, viewport] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
      const page = await adminPage({ viewport, colorScheme: scheme, isMobile: label === 'phone' });
      await page.waitForSelector('tr[data-job-id]');
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `${label} ${scheme}: no horizontal scroll (${overflow}px)`);
      await shot(page, `backups-${label}-${scheme}`);
      assert.deepEqual(page.errors, []);
      await page.context().close();
    }
  }
});

test('an upload in flight can be canceled: the dialog closes and nothing is stored', async () => {
  const page = await newPage(browser);
  await login(page, server.base);
  const jobsBefore = (await (await page.request.get(`${server.base}/api/backups/jobs/?limit=1`)).json()).total;
  const big = join(work, 'too-slow.tar.gz');
  const block = randomBytes(1 << 20);
  const chunks = [];
  for (let i = 0; i < 128; i++) chunks.push(block);
  writeFileSync(big, Buffer.concat(chunks));
  // A slow link, so the upload is still going when Cancel is pressed.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 4 * 1024 * 1024,
  });
  await page.setInputFiles('#upload-input', big);
  await page.waitForFunction(() => {
    const t = document.querySelector('#upload-progress')?.textContent ?? '';
    return /\(([1-9]\d?)%\)/.test(t);
  }, null, { timeout: 60000 });
  await page.click('#cancel-upload');
  await page.waitForSelector('#upload-title', { state: 'detached' });
  await page.waitForSelector('text=Upload canceled; nothing was stored.');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  // The server drops the partial upload: no file left behind, no job listed.
  const backups = join(server.dataDir, 'backups');
  const deadline = Date.now() + 30000;
  while (readdirSync(backups).some((f) => f.endsWith('.partial'))) {
    assert.ok(Date.now() < deadline, `partial upload left: ${readdirSync(backups)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const jobsAfter = (await (await page.request.get(`${server.base}/api/backups/jobs/?limit=1`)).json()).total;
  assert.equal(jobsAfter, jobsBefore, 'no job for a canceled upload');
  assert.deepEqual(page.errors.filter((e) => !/ERR_ABORTED|Failed to load resource/.test(e)), []);
  await page.context().close();
});

test('leaving the page with unsaved settings asks first; with nothing unsaved it does not', async () => {
  const page = await adminPage();
  const was = await page.inputValue('#settings-retention');
  await page.fill('#settings-retention', String(Number(was) + 1));
  await page.locator('.unsaved >> text=Unsaved changes').waitFor();
  const dialogs = [];
  page.on('dialog', async (d) => { dialogs.push(d.type()); await d.dismiss(); });
  // Closing runs beforeunload; dismissing the prompt keeps the page.
  await page.close({ runBeforeUnload: true });
  for (let i = 0; i < 100 && dialogs.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(dialogs, ['beforeunload'], 'the browser asked before leaving');
  assert.equal(page.isClosed(), false, 'staying was possible');
  // Put the value back: nothing unsaved, no prompt, the page closes.
  await page.fill('#settings-retention', was);
  await page.locator('.unsaved >> text=Unsaved changes').waitFor({ state: 'detached' }).catch(() => {});
  assert.equal(await page.locator('.unsaved').textContent(), '');
  const closed = page.waitForEvent('close');
  await page.close({ runBeforeUnload: true });
  await closed;
  assert.deepEqual(dialogs, ['beforeunload'], 'no second prompt');
  await page.context().close();
});
