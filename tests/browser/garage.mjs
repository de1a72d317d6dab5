// A real single-node Garage S3 server for the browser tests, in a temp dir on free loopback
// ports; the JavaScript twin of tests/src/garage.rs (read its docs for the why of each
// setting). `garage server --single-node --default-bucket` lays out a one-node cluster and,
// before the S3 API listens, creates the key named by GARAGE_DEFAULT_ACCESS_KEY /
// GARAGE_DEFAULT_SECRET_KEY and the bucket GARAGE_DEFAULT_BUCKET with full rights for it,
// so the bucket, key id and secret are known up front.
//
// The binary comes from GARAGE_BIN (./test.sh sets it), else the cache tests/garage.sh
// builds into.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export const GARAGE_BIN = process.env.GARAGE_BIN || '/var/tmp/backstop-tools/garage-2.5.0/bin/garage';
/** The S3 region the node is configured with: requests must be signed for it. */
export const REGION = 'garage';
const TIMEOUT_MS = 60000;

const hex = (bytes) => randomBytes(bytes).toString('hex');

/** Distinct free ports: each is held open until all are chosen. */
async function freePorts(n) {
  const { createServer } = await import('node:net');
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      await new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', resolve); });
      servers.push(srv);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/**
 * Starts a fresh node; resolves once its S3 API answers HTTP, to
 * { endpoint, region, bucket, accessKeyId, secretAccessKey, dir, stop(), cleanup() }.
 */
export async function startGarage() {
  if (!existsSync(GARAGE_BIN)) {
    throw new Error(`no Garage binary at ${GARAGE_BIN} (set GARAGE_BIN, or build it with tests/garage.sh path; ./test.sh does both)`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'garage-browser-'));
  const [s3, rpc, admin] = await freePorts(3);
  const config = join(dir, 'garage.toml');
  writeFileSync(config, `metadata_dir = "${join(dir, 'meta')}"
data_dir = "${join(dir, 'data')}"
db_engine = "sqlite"
replication_factor = 1
metadata_fsync = false
data_fsync = false
disable_scrub = true
compression_level = "none"

rpc_bind_addr = "127.0.0.1:${rpc}"
rpc_public_addr = "127.0.0.1:${rpc}"
rpc_secret = "${hex(32)}"

[s3_api]
api_bind_addr = "127.0.0.1:${s3}"
s3_region = "${REGION}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:${admin}"
admin_token = "${hex(32)}"
`);
  const g = {
    endpoint: `http://127.0.0.1:${s3}`,
    region: REGION,
    bucket: 'backstop-browser',
    // Garage's own key format: "GK" + 24 hex digits, and a 64-hex-digit secret.
    accessKeyId: `GK${hex(12)}`,
    secretAccessKey: hex(32),
    dir,
  };
  const logPath = join(dir, 'garage.log');
  const log = openSync(logPath, 'a');
  const child = spawn(GARAGE_BIN, ['-c', config, 'server', '--single-node', '--default-bucket'], {
    env: {
      PATH: process.env.PATH,
      GARAGE_DEFAULT_ACCESS_KEY: g.accessKeyId,
      GARAGE_DEFAULT_SECRET_KEY: g.secretAccessKey,
      GARAGE_DEFAULT_BUCKET: g.bucket,
      RUST_LOG: process.env.TEST_GARAGE_LOG || 'garage=warn',
      NO_COLOR: '1',
    },
    stdio: ['ignore', log, log],
  });
  const tail = () => readFileSync(logPath, 'utf8').split('\n').slice(-40).join('\n');
  let exited = null;
  child.once('exit', (code, signal) => { exited = signal || code; });

  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    // Any HTTP answer (Garage says 403 to an unsigned request) means the API is up.
    const up = await fetch(g.endpoint).then(() => true, () => false);
    if (up) break;
    if (exited !== null) throw new Error(`Garage exited (${exited}) before listening:\n${tail()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`Garage's S3 API did not answer within ${TIMEOUT_MS} ms:\n${tail()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    ...g,
    /** Stops the node (SIGTERM, SIGKILL after 60 s) and waits for it to exit. */
    async stop() {
      if (exited !== null) return;
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
      await done;
      clearTimeout(timer);
    },
    cleanup() { rmSync(dir, { recursive: true, force: true }); },
  };
}
