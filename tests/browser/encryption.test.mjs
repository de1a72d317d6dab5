// The Encryption card, the way an admin uses it: enable encryption and get the emergency kit
// once (a panel that says so, a Download that gives a file with the AGE-SECRET-KEY-1 line),
// a reload that shows only the public key, Check a key with the kit (it opens the backups)
// and with another age key (a different key), and the extra recipients: an invalid one
// marked next to its field, a valid one added and removed. No destination is needed.
// Then the local archives: "Keep local archives encrypted too" saved across a reload, a
// backup stored as .tar.gz.age with a lock in the history and downloaded as it is, its
// Restore confirm naming the instance key, and restored; Upload Archive with a .age file
// made for another key (Debian's age CLI): a wrong key and a damaged file refused in the
// dialog, the right key (a whole age-keygen file pasted) opening it; encryption switched
// off taking local encryption with it.
//
// One server for the file; the tests run in order and build on each other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, launch, newPage, login, hydrated, shot, runBackup, waitForStatus } from './lib.mjs';

let server, browser, page, work, kitText, publicKey;
/** The encrypted backup downloaded from the history (encrypted to the instance key). */
let stored;

before(async () => {
  server = await startServer();
  browser = await launch();
  page = await newPage(browser);
  work = mkdtempSync(join(tmpdir(), 'backstop-browser-enc-'));
  await login(page, server.base);
});
after(async () => {
  await browser?.close();
  await server?.stop();
  server?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function api(path) {
  const r = await page.request.get(`${server.base}${path}`);
  assert.equal(r.status(), 200, `GET ${path}`);
  return r.json();
}

/** The public key as the Restore confirm shows it: its two ends. */
const shortKey = (k) => `${k.slice(0, 12)}…${k.slice(-6)}`;

/** A fresh age key file as `age-keygen` writes it, and its public key. */
function ageKeygen() {
  const text = execFileSync('age-keygen', [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const pub = text.match(/public key: (age1[0-9a-z]+)/)[1];
  return { text, pub };
}

async function checkKey(text) {
  await page.fill('#check-key-text', text);
  await page.click('#check-key');
  const result = page.locator('#check-result span');
  await result.waitFor();
  return result;
}

test('enabling encryption shows the emergency kit once, with a Download', async () => {
  await page.waitForSelector('#encryption-status:has-text("Encryption is off")');
  assert.equal(await page.locator('#encryption-public-key').count(), 0, 'no public key before the first enable');
  assert.equal(await page.locator('#encrypt-local').count(), 0, 'no local encryption switch while encryption is off');
  await page.click('#enable-encryption');
  const panel = page.locator('#kit-panel');
  await panel.waitFor();
  assert.match(await panel.innerText(), /Save your emergency kit now — it is shown only once/);
  await page.waitForSelector('#encryption-status:has-text("Encryption is on")');
  kitText = await page.inputValue('#kit-text');
  assert.match(kitText, /AGE-SECRET-KEY-1[0-9A-Z]+/);

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-kit')]);
  assert.equal(download.suggestedFilename(), 'backstop-key.txt');
  const file = readFileSync(await download.path(), 'utf8');
  assert.match(file, /AGE-SECRET-KEY-1[0-9A-Z]+/);
  assert.equal(file, kitText, 'the file is the kit shown');

  publicKey = (await page.locator('#encryption-public-key').innerText()).trim();
  assert.match(publicKey, /^age1[0-9a-z]+$/);
  await shot(page, 'encryption-kit');
});

test('after a reload the kit is gone and the public key is shown', async () => {
  await page.reload();
  await hydrated(page);
  await page.waitForSelector('#encryption-status:has-text("Encryption is on")');
  assert.equal(await page.locator('#kit-panel').count(), 0, 'the kit is shown only once');
  assert.equal((await page.locator('#encryption-public-key').innerText()).trim(), publicKey);
  assert.equal(await page.locator('#enable-encryption').count(), 0);
});

test('Check a key: the kit opens the backups, another key does not', async () => {
  let result = await checkKey(kitText);
  await page.waitForSelector('#check-result span.ok:has-text("this key opens your backups")');
  const other = ageKeygen();
  result = await checkKey(other.text);
  await page.waitForSelector('#check-result span.error:has-text("different key")');
  assert.match(await result.innerText(), new RegExp(other.pub));
  await shot(page, 'encryption-check');
});

test('recipients: an invalid key is marked inline, a valid one is added and removed', async () => {
  await page.fill('#recipient-input', 'age1notarealkey');
  await page.click('#add-recipient');
  const err = page.locator('#err-recipients');
  await err.waitFor();
  assert.match(await err.innerText(), /age1/);
  assert.equal(await page.getAttribute('#recipient-input', 'aria-invalid'), 'true');
  assert.equal(await page.locator('li.recipient').count(), 0, 'nothing added');
  await shot(page, 'encryption-invalid-recipient');

  const { pub } = ageKeygen();
  await page.fill('#recipient-input', pub);
  await page.click('#add-recipient');
  await page.waitForSelector(`li.recipient[data-recipient="${pub}"]`);
  assert.equal(await page.locator('#err-recipients').count(), 0, 'the error went');
  assert.equal(await page.inputValue('#recipient-input'), '');

  await page.reload();
  await hydrated(page);
  await page.waitForSelector(`li.recipient[data-recipient="${pub}"]`);
  await page.click(`li.recipient[data-recipient="${pub}"] .recipient-remove`);
  await page.waitForSelector(`li.recipient[data-recipient="${pub}"]`, { state: 'detached' });
  assert.deepEqual(page.errors, []);
});

test('"Keep local archives encrypted too" is saved and shown after a reload', async () => {
  const box = page.locator('#encrypt-local');
  await box.waitFor();
  assert.equal(await box.isChecked(), false, 'off until switched on');
  await box.click();
  const line = page.locator('.encryption .status-line .ok, #err-encrypt-local').first();
  await line.waitFor();
  assert.match(await line.innerText(), /Local archives are kept encrypted too/, 'saved, not refused');
  assert.equal(await page.locator('#err-encrypt-local').count(), 0);
  await shot(page, 'encryption-local');

  await page.reload();
  await hydrated(page);
  await page.waitForSelector('#encryption-status:has-text("Encryption is on")');
  await page.waitForFunction(() => document.querySelector('#encrypt-local')?.checked === true);
  assert.equal((await api('/api/backups/encryption/')).encrypt_local, true);
});

test('a backup kept encrypted has a lock, downloads as .age, and its Restore names the instance key', async () => {
  const id = await runBackup(page);
  await waitForStatus(page, id, 'succeeded');
  const row = page.locator(`tr[data-job-id="${id}"]`);
  const name = (await row.locator('.archive-name').textContent()).trim();
  assert.match(name, /\.tar\.gz\.age$/);
  assert.equal(await row.locator('.job-lock').count(), 1, 'the lock');
  assert.match(await row.locator('td[data-label="Type"]').textContent(), /, encrypted/, 'said to a screen reader');
  assert.equal((await api(`/api/backups/jobs/${id}/`)).encrypted, true);

  // The download is the file as stored: age, opened by the kit.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    row.locator('a[aria-label^="Download"]').click(),
  ]);
  assert.equal(download.suggestedFilename(), name);
  stored = join(work, name);
  await download.saveAs(stored);
  assert.equal(readFileSync(stored).subarray(0, 21).toString(), 'age-encryption.org/v1');

  await row.locator('button[aria-label^="Restore"]').click();
  const dialog = page.locator('.modal[role="dialog"]');
  await dialog.waitFor();
  const text = await dialog.innerText();
  assert.ok(text.includes(`This archive is encrypted; it will be decrypted with this instance's key (${shortKey(publicKey)}).`), text);
  await shot(page, 'encryption-restore-confirm');
  await dialog.locator('button:text-is("Restore")').click();
  await page.waitForSelector('.run .status-line:has-text("Restore job")');
  const rid = Number((await page.textContent('.run .status-line')).match(/Restore job (\d+)/)[1]);
  await waitForStatus(page, rid, 'succeeded', 120000);
  assert.equal(await page.locator(`tr[data-job-id="${rid}"] .job-lock`).count(), 1, 'the restore of an encrypted archive has its lock');
  assert.deepEqual(page.errors, []);
});

test('uploading a .age archive made for another key: a wrong key and a damaged file are refused, the right key opens it', async () => {
  // The downloaded backup, opened with the kit and encrypted for another key (another install's).
  const other = ageKeygen();
  const kitFile = join(work, 'backstop-key.txt');
  writeFileSync(kitFile, kitText);
  const plain = join(work, 'plain.tar.gz');
  execFileSync('age', ['-d', '-i', kitFile, '-o', plain, stored]);
  const foreign = join(work, 'foreign.tar.gz.age');
  execFileSync('age', ['-r', other.pub, '-o', foreign, plain]);
  const damaged = join(work, 'damaged.tar.gz.age');
  copyFileSync(foreign, damaged);
  truncateSync(damaged, statSync(damaged).size - 100);
  const jobsBefore = (await api('/api/backups/jobs/')).total;

  const keyDialog = page.locator('#upload-key');
  const error = page.locator('#upload-error');
  await page.setInputFiles('#upload-input', foreign);
  await keyDialog.waitFor();
  assert.match(await keyDialog.innerText(), /Key for encrypted archives/);
  assert.match(await keyDialog.innerText(), /only for a \.age archive from another install/i);
  assert.equal(await page.getAttribute('#upload-identity', 'type'), 'password');
  await shot(page, 'encryption-upload-key');
  await page.fill('#upload-identity', ageKeygen().text);
  await page.click('#start-upload');
  await error.waitFor({ timeout: 60000 });
  assert.match(await error.innerText(), /different key/);
  await shot(page, 'encryption-upload-wrong-key');

  // Another key for the same file: the whole age-keygen file, pasted into the one-line field.
  await page.click('#retry-key');
  await keyDialog.waitFor();
  assert.equal(await page.inputValue('#upload-identity'), '', 'a key is not kept after it was sent');
  await page.fill('#upload-identity', other.text);
  await page.click('#start-upload');
  const summary = page.locator('#manifest-summary');
  const outcome = page.locator('#manifest-summary, #upload-error').first();
  await outcome.waitFor({ timeout: 60000 });
  assert.match(await outcome.innerText(), /foreign\.tar\.gz\.age/, 'opened, not refused');
  assert.match(await summary.innerText(), /Restore this archive\?/);
  await summary.locator('button:text-is("Keep it for later")').click();
  await summary.waitFor({ state: 'detached' });

  // A damaged file, with the right key: refused, and nothing kept.
  await page.setInputFiles('#upload-input', damaged);
  await keyDialog.waitFor();
  await page.fill('#upload-identity', other.text);
  await page.click('#start-upload');
  await error.waitFor({ timeout: 60000 });
  assert.match(await error.innerText(), /damaged/);
  await page.locator('[aria-labelledby="upload-failed-title"] button:text-is("Close")').click();
  await error.waitFor({ state: 'detached' });

  assert.equal((await api('/api/backups/jobs/')).total, jobsBefore + 1, 'only the upload that opened was kept');
  // The browser logs each refused upload's answer; those two and nothing else.
  const refused = (e) => /status of 422/.test(e);
  assert.equal(page.errors.filter(refused).length, 2);
  assert.deepEqual(page.errors.filter((e) => !refused(e)), []);
  page.errors.length = 0;
});

test('turning encryption off turns local encryption off; a plain backup has no lock and no key in its Restore', async () => {
  await page.click('#disable-encryption');
  await page.waitForSelector('#encryption-status:has-text("Encryption is off")');
  assert.equal(await page.locator('#encrypt-local').count(), 0, 'the switch goes with encryption');
  assert.equal((await api('/api/backups/encryption/')).encrypt_local, false);

  const id = await runBackup(page);
  await waitForStatus(page, id, 'succeeded');
  const row = page.locator(`tr[data-job-id="${id}"]`);
  assert.match((await row.locator('.archive-name').textContent()).trim(), /\.tar\.gz$/);
  assert.equal(await row.locator('.job-lock').count(), 0);
  await row.locator('button[aria-label^="Restore"]').click();
  const dialog = page.locator('.modal[role="dialog"]');
  await dialog.waitFor();
  assert.doesNotMatch(await dialog.innerText(), /encrypted|key/);
  await dialog.locator('button:text-is("Back")').click();
  await dialog.waitFor({ state: 'detached' });

  // On again: the same key (no new kit), and the switch back, off.
  await page.click('#enable-encryption');
  await page.waitForSelector('#encryption-status:has-text("Encryption is on")');
  assert.equal(await page.locator('#kit-panel').count(), 0, 'no second kit');
  assert.equal((await page.locator('#encryption-public-key').innerText()).trim(), publicKey);
  assert.equal(await page.locator('#encrypt-local').isChecked(), false);
  assert.deepEqual(page.errors, []);
});
