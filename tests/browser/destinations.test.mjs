// The Destinations card against a real single-node Garage S3 server (garage.mjs), the way a
// person uses it: add a destination (a bad bucket name marked next to its field, a wrong
// secret failing the test with a credentials message, then the right one passing), an
// encrypted copy failing with "set up encryption first" (no key yet) on its badge and in the
// destination's warning, Retry after switching encryption off, a backup copied at once,
// the enabled switch, disaster recovery on a fresh install (Browse copies, Import, restore),
// an encrypted copy imported there with the emergency kit's key, and Delete with its confirm.
//
// One Garage and one server for the file; the tests run in order and build on each other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startServer, launch, newPage, hydrated, login, shot, runBackup, waitForStatus } from './lib.mjs';
import { startGarage } from './garage.mjs';

const NAME = 'garage-nas';
let garage, server, browser;

before(async () => {
  garage = await startGarage();
  server = await startServer();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
  server?.cleanup();
  await garage?.stop();
  garage?.cleanup();
});

async function adminPage(base = server.base, opts = {}) {
  const page = await newPage(browser, opts);
  await login(page, base);
  await page.waitForSelector('#add-destination');
  // The list has loaded (an empty list says so; a full one has its items).
  await page.waitForSelector('.destinations .destination, .destinations .empty:has-text("No destinations yet")');
  return page;
}

/** The card of the destination named `name`. */
const card = (page, name = NAME) => page.locator('li.destination', { has: page.locator(`h3.dest-name:text-is("${name}")`) });

async function api(page, base, path) {
  const r = await page.request.get(`${base}${path}`);
  assert.equal(r.status(), 200, `GET ${path}`);
  return r.json();
}

/** Fills the open Add / Edit dialog; only the fields given are touched. */
async function fillForm(page, fields) {
  const ids = {
    name: '#dest-name', endpoint: '#dest-endpoint', region: '#dest-region', bucket: '#dest-bucket',
    prefix: '#dest-prefix', accessKeyId: '#dest-access-key-id', secret: '#dest-secret', retention: '#dest-retention',
  };
  for (const [k, v] of Object.entries(fields)) {
    if (k in ids) await page.fill(ids[k], v);
    else if (k === 'encrypt') await page.setChecked('#dest-encrypt', v);
    else if (k === 'pathStyle') await page.setChecked('#dest-path-style', v);
    else throw new Error(`no form field ${k}`);
  }
}

/** Saves the open dialog and waits for it to close. */
async function saveForm(page) {
  await page.click('#save-destination');
  await page.waitForSelector('#destination-dialog', { state: 'detached' });
}

/** The settings of the Garage node, as a person types them in. */
function garageFields(secret = garage.secretAccessKey) {
  return {
    name: NAME, endpoint: garage.endpoint, region: garage.region, bucket: garage.bucket,
    accessKeyId: garage.accessKeyId, secret, encrypt: false,
  };
}

/** The copy badge of job `id` to the destination named `name`. */
function copyOf(page, id, name = NAME) {
  return page.locator(`tr[data-job-id="${id}"] li.copy`, { has: page.locator(`.copy-name:text-is("${name}")`) });
}

/** Row counts per table as the Data page shows them. */
async function dataPageCounts(page, base) {
  await page.goto(`${base}/data`);
  await page.waitForSelector('tr[data-table] td.num');
  return page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll('tr[data-table]')].map((tr) => [tr.dataset.table, Number(tr.querySelector('td.num').dataset.rows)]),
  ));
}

test('adding a destination: a bad bucket is marked at its field, a wrong secret fails the test, the right one passes', async () => {
  const page = await adminPage();
  assert.match(await page.textContent('#dr-hint'), /Server died\?.*same bucket.*Import/s);
  await page.click('#add-destination');
  await page.waitForSelector('#destination-dialog');
  // The contract's defaults: path-style, encrypted, enabled.
  assert.equal(await page.isChecked('#dest-path-style'), true);
  assert.equal(await page.isChecked('#dest-encrypt'), true);
  assert.equal(await page.isChecked('#dest-enabled'), true);
  assert.equal(await page.getAttribute('#dest-secret', 'type'), 'password');

  // Not a bucket name: the engine's message sits next to the bucket field; nothing saved.
  await fillForm(page, { ...garageFields('wrong-secret'), bucket: 'Bad_Bucket', encrypt: true });
  await page.click('#save-destination');
  const bucketError = page.locator('#destination-dialog .field', { has: page.locator('#dest-bucket') }).locator('.field-error');
  await bucketError.waitFor();
  assert.match(await bucketError.textContent(), /lowercase letters, digits, dots or hyphens/);
  assert.equal(await page.getAttribute('#dest-bucket', 'aria-invalid'), 'true');
  assert.equal(await page.getAttribute('#dest-name', 'aria-invalid'), 'false', 'only the bad field is marked');
  assert.match(await page.textContent('#destination-dialog [role="status"]'), /Nothing was saved/);
  await shot(page, 'destinations-form-errors-desktop-light');
  assert.deepEqual((await api(page, server.base, '/api/backups/destinations/')).destinations, []);
  // Not a number of copies: said at its field before anything is sent.
  await fillForm(page, { bucket: garage.bucket, retention: 'many' });
  await page.click('#save-destination');
  await page.locator('#err-dest-retention_count').waitFor();
  assert.match(await page.textContent('#err-dest-retention_count'), /whole number/);
  assert.equal(await page.locator('#err-dest-bucket').count(), 0, 'the fixed field is no longer marked');

  // Valid, but with a wrong secret: saved, and the test names the credentials.
  await fillForm(page, { retention: '3' });
  await saveForm(page);
  const item = card(page);
  await item.waitFor();
  assert.equal((await item.locator('.dest-where').textContent()).trim(), `${garage.bucket}@${garage.endpoint}`);
  assert.match(await item.textContent(), /Keeps the newest 3 copies/);
  assert.match(await item.textContent(), /Encrypted copies/);
  assert.match(await item.textContent(), /Not used yet/);
  assert.match(await page.textContent('.destinations .status-line'), new RegExp(`Destination ${NAME} added`));
  await item.locator('button.dest-test-btn').click();
  await item.locator('.dest-test:has-text("Test failed")').waitFor({ timeout: 60000 });
  assert.match(await item.locator('.dest-test').textContent(), /credentials: the store does not accept this access key and secret/);
  // The failure stays on screen as a warning naming the destination (from its last_status).
  await item.locator('.dest-warning').waitFor();
  assert.match(await item.locator('.dest-warning').textContent(), new RegExp(`${NAME} failed: .*credentials`));

  // Edit: the secret is never shown; empty keeps it; the right one makes the test pass.
  await item.locator('button.dest-edit').click();
  await page.waitForSelector('#destination-dialog');
  assert.equal(await page.inputValue('#dest-secret'), '');
  assert.match(await page.textContent('#hint-dest-secret'), /stored — leave empty to keep/);
  assert.equal(await page.inputValue('#dest-bucket'), garage.bucket);
  assert.equal(await page.inputValue('#dest-region'), garage.region);
  assert.equal(await page.inputValue('#dest-retention'), '3');
  await fillForm(page, { secret: garage.secretAccessKey });
  await saveForm(page);
  await item.locator('button.dest-test-btn').click();
  await item.locator('.dest-test:has-text("Test passed")').waitFor({ timeout: 60000 });
  assert.match(await item.locator('.dest-test').textContent(), new RegExp(`wrote, read back and deleted a test object in ${garage.bucket}`));
  await item.locator('.dest-warning').waitFor({ state: 'detached' });
  assert.match(await item.locator('.dest-last').textContent(), /worked/);

  // Write only: the API and the page never hold the secret.
  const [d] = (await api(page, server.base, '/api/backups/destinations/')).destinations;
  assert.equal(d.s3.secret_access_key, null);
  assert.equal(d.s3.secret_set, true);
  assert.equal(d.encrypt, true);
  assert.ok(!(await page.content()).includes(garage.secretAccessKey), 'the secret is not in the page');
  await shot(page, 'destinations-desktop-light');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('an encrypted copy fails with "set up encryption first" on its badge; with encryption off, Retry copies it', async () => {
  const page = await adminPage();
  const id = await runBackup(page);
  await waitForStatus(page, id, 'succeeded');
  const copy = copyOf(page, id);
  await copy.locator('.copy-status:text-is("failed")').waitFor();
  const badge = copy.locator('.copy-badge');
  assert.match(await badge.getAttribute('data-tooltip'), new RegExp(`Copy to ${NAME} failed: set up encryption first`));
  await badge.hover();
  assert.match(await badge.evaluate((el) => getComputedStyle(el, '::after').content), /set up encryption first/, 'the reason shows on hover');
  // A failed copy is a warning on the job, never a failed backup, and the destination says so.
  const item = card(page);
  await item.locator('.dest-warning:has-text("set up encryption first")').waitFor();
  assert.match(await item.locator('.dest-warning').textContent(), new RegExp(`${NAME} failed`));
  await shot(page, 'destinations-failed-copy-desktop-light');

  await item.locator('button.dest-edit').click();
  await page.waitForSelector('#destination-dialog');
  await fillForm(page, { encrypt: false });
  await saveForm(page);
  await item.locator('.dest-encrypt:text-is("Not encrypted")').waitFor();
  await copy.locator('button.copy-retry').click();
  await copy.locator('.copy-status:text-is("succeeded")').waitFor({ timeout: 60000 });
  assert.equal(await copy.locator('.copy-badge').getAttribute('data-tooltip'), `Copied to ${NAME}`, 'no error left on it');
  assert.equal(await copy.locator('button.copy-retry').count(), 0);
  assert.match(await page.textContent('.run .status-line'), new RegExp(`Copying job ${id} to ${NAME} again`));
  // The destination's warning goes once a copy succeeds.
  await item.locator('.dest-warning').waitFor({ state: 'detached' });
  const job = await api(page, server.base, `/api/backups/jobs/${id}/`);
  assert.equal(job.copies[0].status, 'succeeded');
  assert.equal(job.copies[0].sha256, job.sha256, 'the store holds the archive as made');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a backup is copied at once: its row shows a succeeded copy; switched off, a backup is not copied', async () => {
  const page = await adminPage();
  const id = await runBackup(page);
  await waitForStatus(page, id, 'succeeded');
  await copyOf(page, id).locator('.copy-status:text-is("succeeded")').waitFor();

  const item = card(page);
  await item.locator('input.dest-enabled').uncheck();
  await page.waitForSelector(`.destinations .status-line:has-text("${NAME} is disabled")`);
  assert.equal((await api(page, server.base, '/api/backups/destinations/')).destinations[0].enabled, false);
  const off = await runBackup(page);
  await waitForStatus(page, off, 'succeeded');
  assert.equal(await page.locator(`tr[data-job-id="${off}"] .copies`).count(), 0, 'no copy while disabled');
  await item.locator('input.dest-enabled').check();
  await page.waitForSelector(`.destinations .status-line:has-text("${NAME} is enabled")`);
  assert.equal((await api(page, server.base, '/api/backups/destinations/')).destinations[0].enabled, true);

  // Phone width: the card and the copy badges fit without horizontal scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `no horizontal scroll on a phone (${overflow}px)`);
  await shot(page, 'destinations-phone-light');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('disaster recovery: a fresh install given the same bucket lists its copies, imports one and restores it', async () => {
  // What the first server copied (its API wants a session: read through a signed-in page).
  const first = await adminPage();
  const jobs = (await api(first, server.base, '/api/backups/jobs/?limit=50')).jobs;
  const names = jobs
    .filter((j) => j.copies.some((c) => c.status === 'succeeded'))
    .map((j) => j.archive_name);
  assert.ok(names.length >= 2, `the first server copied backups: ${names}`);
  await first.context().close();

  const fresh = await startServer();
  try {
    const page = await adminPage(fresh.base);
    const before = await dataPageCounts(page, fresh.base);
    assert.ok(before.channels > 2);
    await page.goto(`${fresh.base}/backups`);
    await hydrated(page);
    await page.waitForSelector('.destinations .empty:has-text("No destinations yet")');
    await page.click('#add-destination');
    await page.waitForSelector('#destination-dialog');
    await fillForm(page, garageFields());
    await saveForm(page);
    const item = card(page);
    await item.locator('button.dest-browse').click();
    const dialog = page.locator('#archives-dialog');
    await dialog.waitFor();
    assert.match(await dialog.locator('h2').textContent(), new RegExp(`Copies in ${NAME}`));
    await dialog.locator('tr[data-archive]').first().waitFor({ timeout: 60000 });
    const listed = await dialog.locator('tr[data-archive]').evaluateAll((rows) => rows.map((r) => r.dataset.archive));
    assert.deepEqual([...listed].sort(), [...names].sort(), 'every complete copy is listed');
    const newest = dialog.locator('tr[data-archive]').first();
    const name = await newest.getAttribute('data-archive');
    assert.match(await newest.textContent(), /\d+(\.\d)? (B|KiB|MiB)/);
    assert.match(await newest.locator('.archive-lock').textContent(), /no/, 'a plain copy has no lock');
    await shot(page, 'destinations-remote-archives-desktop-light');

    await newest.locator('button.archive-import').click();
    await dialog.locator('[role="status"]:has-text("Imported")').waitFor({ timeout: 60000 });
    const text = await dialog.locator('[role="status"]').textContent();
    assert.match(text, new RegExp(`Imported ${name.replace(/\./g, '\\.')} as backup job \\d+`));
    const imported = Number(text.match(/backup job (\d+)/)[1]);
    await dialog.locator('button:text-is("Close")').click();
    await dialog.waitFor({ state: 'detached' });
    const row = page.locator(`tr[data-job-id="${imported}"]`);
    await row.waitFor();
    assert.equal((await row.locator('td[data-label="Trigger"]').textContent()).trim(), 'Import');
    assert.equal((await row.locator('.badge').first().textContent()).trim(), 'succeeded');
    const job = await api(page, fresh.base, `/api/backups/jobs/${imported}/`);
    assert.equal(job.trigger, 'import');
    assert.equal(job.original_filename, name);

    // It restores the usual way: the data changed here comes back.
    execFileSync('sqlite3', [join(fresh.dataDir, 'app.db'), 'DELETE FROM channels WHERE id > 2;']);
    await row.locator('button[aria-label^="Restore"]').click();
    const confirm = page.locator('.modal[role="dialog"]');
    await confirm.waitFor();
    await confirm.locator('button:text-is("Restore")').click();
    await page.waitForSelector('.run .status-line:has-text("Restore job")');
    const rid = Number((await page.textContent('.run .status-line')).match(/Restore job (\d+)/)[1]);
    await waitForStatus(page, rid, 'succeeded', 120000);
    assert.deepEqual(page.errors, []);
    assert.deepEqual(await dataPageCounts(page, fresh.base), before, 'the imported copy restored the data');
    await page.context().close();
  } finally {
    await fresh.stop();
    fresh.cleanup();
  }
});

test('an encrypted copy carries a lock, and a fresh install imports it with the emergency kit key', async () => {
  const page = await adminPage();
  // Encryption on (its UI is not this file's subject): the answer holds the key, once.
  const r = await page.request.put(`${server.base}/api/backups/encryption/`, {
    headers: { origin: server.base }, data: { enabled: true },
  });
  assert.equal(r.status(), 200);
  const { identity } = await r.json();
  assert.match(identity, /^AGE-SECRET-KEY-1/);
  const item = card(page);
  await item.locator('button.dest-edit').click();
  await page.waitForSelector('#destination-dialog');
  await fillForm(page, { encrypt: true });
  await saveForm(page);
  await item.locator('.dest-encrypt:text-is("Encrypted copies")').waitFor();
  const id = await runBackup(page);
  await waitForStatus(page, id, 'succeeded');
  const copy = copyOf(page, id);
  await copy.locator('.copy-status:text-is("succeeded")').waitFor({ timeout: 60000 });
  assert.equal(await copy.locator('.copy-lock').count(), 1, 'the copy says it is encrypted');
  assert.equal(await copy.locator('.copy-badge').getAttribute('data-tooltip'), `Copied to ${NAME}, encrypted`);
  assert.deepEqual(page.errors, []);
  await page.context().close();

  const fresh = await startServer();
  try {
    const page = await adminPage(fresh.base);
    await page.click('#add-destination');
    await page.waitForSelector('#destination-dialog');
    await fillForm(page, garageFields());
    await saveForm(page);
    await card(page).locator('button.dest-browse').click();
    const dialog = page.locator('#archives-dialog');
    const sealed = dialog.locator('tr[data-archive$=".age"]');
    await sealed.first().waitFor({ timeout: 60000 });
    assert.equal(await sealed.count(), 1);
    assert.equal(await sealed.locator('.archive-lock .lock').count(), 1, 'the encrypted copy has its lock');
    assert.equal(await dialog.locator('tr[data-archive]:not([data-archive$=".age"]) .archive-lock .lock').count(), 0);
    // Without the key a fresh install cannot open it, and says what to give.
    await sealed.locator('button.archive-import').click();
    await dialog.locator('[role="status"] .error').waitFor({ timeout: 60000 });
    assert.match(await dialog.locator('[role="status"]').textContent(), /emergency kit/);
    await page.fill('#import-identity', identity);
    await sealed.locator('button.archive-import').click();
    await dialog.locator('[role="status"]:has-text("Imported")').waitFor({ timeout: 60000 });
    const imported = Number((await dialog.locator('[role="status"]').textContent()).match(/backup job (\d+)/)[1]);
    const job = await api(page, fresh.base, `/api/backups/jobs/${imported}/`);
    assert.equal(job.trigger, 'import');
    assert.equal(job.can_restore, true);
    // The refused import is the one failed call (the browser logs its HTTP status).
    assert.deepEqual(page.errors.filter((e) => !/status of (4\d\d|500)/.test(e)), []);
    await page.context().close();
  } finally {
    await fresh.stop();
    fresh.cleanup();
  }
});

test('deleting a destination asks first; Back keeps it, Delete forgets it and the history still names it', async () => {
  const page = await adminPage();
  const item = card(page);
  await item.locator('button.dest-delete').click();
  const dialog = page.locator('.modal[role="dialog"]');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), new RegExp(`Delete the destination ${NAME}\\?`));
  assert.match(await dialog.textContent(), new RegExp(`copies already in ${garage.bucket} stay there`));
  await dialog.locator('button:text-is("Back")').click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await item.count(), 1, 'Back changes nothing');
  await item.locator('button.dest-delete').click();
  await dialog.locator('button:text-is("Delete")').click();
  await item.waitFor({ state: 'detached' });
  await page.waitForSelector(`.destinations .status-line:has-text("Destination ${NAME} deleted")`);
  await page.waitForSelector('.destinations .empty:has-text("No destinations yet")');
  assert.deepEqual((await api(page, server.base, '/api/backups/destinations/')).destinations, []);
  // The copies it made are still in the history, under the name it had.
  assert.ok(await page.locator(`li.copy .copy-name:text-is("${NAME}")`).count() >= 1);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
