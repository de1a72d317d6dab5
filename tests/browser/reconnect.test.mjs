// Live status survives a server restart: the page's event stream reconnects on its own and
// the history catches up with what happened while the server was down, without a reload.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, newPage, login, freePort, shot } from './lib.mjs';

let server, browser;
after(async () => { await browser?.close(); await server?.stop(); server?.cleanup(); });

test('after a server restart the history updates live again, without a reload', async () => {
  const port = await freePort();
  const bind = `127.0.0.1:${port}`;
  server = await startServer({}, null, bind);
  browser = await launch();
  const page = await newPage(browser);
  await login(page, server.base);
  await page.waitForSelector('.jobs');
  // A marker that a reload would wipe.
  await page.evaluate(() => { window.__sameDocument = true; });

  // The server goes away. While it is down, a backup is made with the CLI (the data dir
  // is free, so the CLI runs it itself).
  const dataDir = server.dataDir;
  await server.stop();
  const out = server.cli(['backup']);
  assert.equal(out.status, 0, out.stderr);
  const name = out.stdout.trim().split('\n').pop();
  assert.match(name, /^backstop-.*\.tar\.gz$/, 'the CLI prints the archive name');

  // Back on the same address with the same data: the stream reconnects and the page
  // reloads its history; the CLI's job shows up.
  server = await startServer({}, dataDir, bind);
  await page.waitForFunction(
    (name) => [...document.querySelectorAll('tr.job-row')].some(
      (tr) => tr.querySelector('.archive-name')?.textContent === name && tr.querySelector('.badge')?.textContent.trim() === 'succeeded'),
    name,
    { timeout: 60000 },
  );
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no page reload');

  // And live updates flow again: a job started over the API appears and finishes.
  const r = await page.request.post(`${server.base}/api/backups/jobs/`, {
    data: {},
    headers: { origin: server.base },
  });
  assert.equal(r.status(), 202, await r.text());
  const next = (await r.json()).id;
  await page.waitForSelector(`tr[data-job-id="${next}"] .badge:text("succeeded")`, { timeout: 60000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'still no reload');
  // Only the expected noise while the server was down (refused connections), nothing else.
  const unexpected = page.errors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource|EventSource/i.test(e));
  assert.deepEqual(unexpected, []);
  await shot(page, 'reconnected-desktop-light');
  await page.context().close();
});
