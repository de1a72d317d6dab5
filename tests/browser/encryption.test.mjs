// The Encryption card, the way an admin uses it: enable encryption and get the emergency kit
// once (a panel that says so, a Download that gives a file with the AGE-SECRET-KEY-1 line),
// a reload that shows only the public key, Check a key with the kit (it opens the backups)
// and with another age key (a different key), and the extra recipients: an invalid one
// marked next to its field, a valid one added and removed. No destination is needed.
//
// One server for the file; the tests run in order and build on each other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startServer, launch, newPage, login, hydrated, shot } from './lib.mjs';

let server, browser, page, kitText, publicKey;

before(async () => {
  server = await startServer();
  browser = await launch();
  page = await newPage(browser);
  await login(page, server.base);
});
after(async () => {
  await browser?.close();
  await server?.stop();
  server?.cleanup();
});

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
