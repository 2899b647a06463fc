import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import packageJson from '../package.json';
import { RESTART_COMMAND, SHOW_OUTPUT_COMMAND, stateFromModel, statusView, TOGGLE_COMMAND } from '../src/status';

test('loading spins and names the model', () => {
  const view = statusView({ kind: 'starting', model: 'tiny' }, true);
  assert.match(view.text, /loading~spin/);
  assert.match(view.tooltip, /"tiny"/);
  assert.equal(view.command, TOGGLE_COMMAND);
});

test('ready shows the last latency and toggles on click', () => {
  assert.equal(statusView({ kind: 'ready', model: 'tiny' }, true).text, '$(sparkle) SantaCoder');
  const view = statusView({ kind: 'ready', model: 'tiny', lastLatencyMs: 41.6 }, true);
  assert.equal(view.text, '$(sparkle) SantaCoder 42 ms');
  assert.equal(view.command, TOGGLE_COMMAND);
  assert.equal(view.error, false);
});

test('turned off is visible', () => {
  const view = statusView({ kind: 'ready', model: 'tiny', lastLatencyMs: 10 }, false);
  assert.match(view.text, /circle-slash/);
  assert.match(view.tooltip, /off\. Click to turn them on/);
});

test('an error is red and opens the output', () => {
  const view = statusView({ kind: 'error', message: 'No Python found on PATH.' }, true);
  assert.equal(view.error, true);
  assert.equal(view.command, SHOW_OUTPUT_COMMAND);
  assert.match(view.tooltip, /No Python found/);
});

test('the model description decides between loading, ready and error', () => {
  assert.equal(stateFromModel({ state: 'loading', name: 'tiny' }, 'tiny'), undefined);
  assert.equal(stateFromModel({ state: 'idle', name: null }, 'tiny'), undefined);
  assert.deepEqual(stateFromModel({ state: 'ready', name: 'tiny', device: 'cpu', dtype: 'fp32' }, 'tiny'), { kind: 'ready', model: 'tiny', device: 'cpu, fp32' });
  assert.deepEqual(stateFromModel({ state: 'failed', name: '/m', error: 'no config.json in /m' }, 'x'), {
    kind: 'error',
    message: 'model "/m" did not load: no config.json in /m.',
  });
  assert.deepEqual(stateFromModel(undefined, 'tiny'), { kind: 'ready', model: 'tiny' });
  assert.match(statusView({ kind: 'starting', model: 'tiny', loading: true }, true).tooltip, /loading model "tiny"/);
});

test('the commands the status item runs are declared in package.json', () => {
  const declared = packageJson.contributes.commands.map((c: { command: string }) => c.command);
  for (const command of [TOGGLE_COMMAND, SHOW_OUTPUT_COMMAND, RESTART_COMMAND, 'santacoder.showStats']) {
    assert.ok(declared.includes(command), command);
  }
});
