// Builds the JavaScript example: node build.mjs OUT_DIR (needs @bytecodealliance/componentize-js).
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile, mkdir, copyFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(process.argv[2] ?? join(here, '../../target/backstop-plugins'), 'js-hello');
const source = await readFile(join(here, 'hooks.js'), 'utf8');
const { component } = await componentize(source, {
  witPath: process.env.WIT_DIR ?? join(here, '../../wit'),
  worldName: 'hook-plugin',
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await mkdir(out, { recursive: true });
await writeFile(join(out, 'plugin.wasm'), component);
await copyFile(join(here, 'plugin.toml'), join(out, 'plugin.toml'));
console.log(join(out, 'plugin.wasm'));
