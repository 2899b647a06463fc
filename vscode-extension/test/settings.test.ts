import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import packageJson from '../package.json';
import {
  CLIENT_ONLY_KEYS,
  CLIENT_RESTART_KEYS,
  declaredSettings,
  needsRestart,
  RESTART_KEYS,
  serverKeys,
  serverOptions,
} from '../src/settings';

const declared = declaredSettings(packageJson);
const defaults = Object.fromEntries(declared.map((s) => [s.key, s.default]));

test('every declared setting has a default and a description', () => {
  const properties = packageJson.contributes.configuration.properties as Record<string, Record<string, unknown>>;
  for (const [name, schema] of Object.entries(properties)) {
    assert.ok(name.startsWith('santacoder.'), name);
    assert.ok('default' in schema, `${name} has no default`);
    assert.ok(schema.description ?? schema.markdownDescription, `${name} has no description`);
  }
});

test('the key lists name only declared settings', () => {
  const keys = declared.map((s) => s.key);
  for (const key of [...CLIENT_ONLY_KEYS, ...RESTART_KEYS, ...CLIENT_RESTART_KEYS]) {
    assert.ok(keys.includes(key), `${key} is not in package.json`);
  }
});

test('defaults become the server options, without the client-only settings', () => {
  const options = serverOptions(declared, () => undefined);
  assert.equal(options.model, 'tiny');
  assert.equal(options.device, 'auto');
  assert.equal(options.quantization, 'none');
  assert.equal(options.trustRemoteCode, false);
  assert.deepEqual(options.enable, { '*': true });
  assert.equal(options.backend, 'inprocess');
  assert.equal(options.serverUrl, 'http://127.0.0.1:8000');
  assert.equal(options.apiKeyEnv, '');
  for (const key of CLIENT_ONLY_KEYS) assert.ok(!(key in options), key);
});

test('in an untrusted workspace the model server and its key variable come from user settings only', () => {
  const restricted = packageJson.capabilities.untrustedWorkspaces.restrictedConfigurations as string[];
  for (const key of ['serverUrl', 'apiKeyEnv']) assert.ok(restricted.includes(`santacoder.${key}`), key);
});

test('configured values pass through under their package.json names', () => {
  const configured: Record<string, unknown> = {
    model: 'bigcode/gpt_bigcode-santacoder',
    device: 'cuda',
    quantization: 'nf4',
    maxNewTokens: 128,
    enable: { '*': false, python: true },
    pythonPath: '/opt/venv/bin/python',
  };
  const options = serverOptions(declared, (key) => configured[key] ?? defaults[key]);
  assert.equal(options.model, 'bigcode/gpt_bigcode-santacoder');
  assert.equal(options.device, 'cuda');
  assert.equal(options.quantization, 'nf4');
  assert.equal(options.maxNewTokens, 128);
  assert.deepEqual(options.enable, { '*': false, python: true });
  assert.equal(options.dtype, 'auto');
  assert.ok(!('pythonPath' in options));
});

test('server keys are the declared keys minus the client-only ones, in order', () => {
  assert.deepEqual(serverKeys(declared), Object.keys(serverOptions(declared, () => undefined)));
});

test('model-loading and interpreter settings restart the server; others do not', () => {
  for (const key of ['model', 'device', 'dtype', 'quantization', 'trustRemoteCode', 'kvCacheMb', 'backend', 'pythonPath', 'serverArgs']) {
    assert.ok(needsRestart(key), key);
  }
  for (const key of ['maxNewTokens', 'debounceMs', 'fimOrder', 'enable', 'inlineCompletions', 'trace.server', 'serverUrl', 'serverModel', 'apiKeyEnv']) {
    assert.ok(!needsRestart(key), key);
  }
});

test('a package.json without settings is an error, not an empty list', () => {
  assert.throws(() => declaredSettings({}), /contributes\.configuration/);
});

// The server's settings parser is the other half of the contract: same names, same defaults, and
// the extension's defaults parse without a single problem. Runs when the server is importable.
test('package.json matches lsp_server/settings.py', (t) => {
  const script = [
    'import json, sys',
    'from lsp_server.settings import Settings, parse_settings',
    'settings, problems = parse_settings(json.load(sys.stdin))',
    'print(json.dumps({"defaults": Settings().to_json(), "parsed": settings.to_json(), "problems": problems}))',
  ].join('\n');
  const options = serverOptions(declared, () => undefined);
  const run = spawnSync(process.env.SANTACODER_PYTHON ?? 'python3', ['-c', script], {
    input: JSON.stringify(options),
    encoding: 'utf8',
    cwd: path.resolve(__dirname, '../../..'),
  });
  if (run.error || /ModuleNotFoundError: No module named 'lsp_server/.test(run.stderr)) return t.skip('lsp_server is not importable here');
  assert.equal(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(Object.keys(options).sort(), Object.keys(report.defaults).sort(), 'setting names differ');
  assert.deepEqual(options, report.defaults, 'defaults differ');
});
