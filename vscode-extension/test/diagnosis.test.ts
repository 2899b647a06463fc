import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { describeServerFailure, isForwardedLogLine, lastErrorLine, parsePreflight, PREFLIGHT_SCRIPT } from '../src/diagnosis';

const ok = (report: object) => ({ stdout: JSON.stringify(report) + '\n', stderr: '', exitCode: 0 });

test('a good interpreter passes', () => {
  const result = parsePreflight('python3', ok({ version: [3, 11, 7], executable: '/usr/bin/python3', missing: [] }));
  assert.deepEqual(result, { ok: true, version: '3.11.7', executable: '/usr/bin/python3' });
});

test('a Python without the server says where to install it', () => {
  const result = parsePreflight('python3', ok({ version: [3, 12, 1], executable: '/usr/bin/python3', missing: ['lsp_server', 'model_runtime', 'torch'] }));
  assert.equal(result.ok, false);
  const message = !result.ok ? result.message : '';
  assert.match(message, /"\/usr\/bin\/python3" lacks santacoder-lsp/);
  assert.match(message, /pip install/);
  assert.match(message, /santacoder\.pythonPath/);
});

test('only torch missing names torch', () => {
  const result = parsePreflight('python3', ok({ version: [3, 12, 1], executable: '/p', missing: ['torch'] }));
  assert.match(!result.ok ? result.message : '', /lacks torch/);
});

test('an old Python is refused with the version it has', () => {
  const result = parsePreflight('/usr/bin/python3', ok({ version: [3, 8, 10], executable: '/usr/bin/python3', missing: [] }));
  assert.match(!result.ok ? result.message : '', /Python 3\.8\.10; santacoder-lsp needs Python 3\.10\+/);
});

test('an interpreter that cannot start, or is not Python, gets a message too', () => {
  const missing = parsePreflight('/x/python', { stdout: '', stderr: '', exitCode: null, spawnError: 'ENOENT' });
  assert.match(!missing.ok ? missing.message : '', /Could not run .*\/x\/python.*ENOENT/);
  const notPython = parsePreflight('/bin/false', { stdout: '', stderr: 'SyntaxError: invalid syntax', exitCode: 1 });
  assert.match(!notPython.ok ? notPython.message : '', /does not behave like Python 3 \(SyntaxError: invalid syntax\)/);
});

test('the preflight script runs on this machine\'s Python and never imports the server', (t) => {
  const run = spawnSync('python3', ['-c', PREFLIGHT_SCRIPT], { encoding: 'utf8' });
  if (run.error) return t.skip('no python3 here');
  const report = JSON.parse(run.stdout);
  assert.equal(report.version.length, 3);
  assert.ok(Array.isArray(report.missing));
  assert.doesNotMatch(PREFLIGHT_SCRIPT, /^import (lsp_server|torch)/m);
});

test('the last traceback line explains a failure', () => {
  const stderr = [
    'INFO loading model',
    'Traceback (most recent call last):',
    '  File "x.py", line 1, in <module>',
    "model_runtime.loader.ModelNotFound: model directory /m does not exist; set santacoder.model to tiny or a checkpoint directory",
    'exiting',
  ];
  assert.equal(lastErrorLine(stderr), stderr[3]);
  assert.equal(lastErrorLine('usage: santacoder-lsp\nsantacoder-lsp: error: unrecognized arguments: --stdio\n'), 'santacoder-lsp: error: unrecognized arguments: --stdio');
  assert.equal(lastErrorLine(['x', 'ValueError: bad dtype "fp8"', 'shutting down']), 'ValueError: bad dtype "fp8"');
  assert.equal(lastErrorLine('a\nb\n'), 'b');
  assert.equal(lastErrorLine([]), undefined);
});

test('a failed start names the interpreter, the reason and what to try', () => {
  const message = describeServerFailure({ phase: 'start', error: 'Pending response rejected', stderrTail: ['OSError: out of memory'], python: '/usr/bin/python3' });
  assert.match(message, /\/usr\/bin\/python3 -m lsp_server\) failed to start: OSError: out of memory/);
  assert.match(message, /Restart Server/);
  const silent = describeServerFailure({ phase: 'crash', stderrTail: [], python: 'py' });
  assert.match(silent, /stopped repeatedly.*exited without a message/);
});

test('the server\'s own log records are recognised; tracebacks and library output are not', () => {
  assert.ok(isForwardedLogLine('2026-11-21 22:52:33,431 INFO lsp_server: santacoder-lsp 0.1.0 starting (stdio)'));
  assert.ok(isForwardedLogLine('2026-11-21 22:52:33,431 WARNING model_runtime.loader: no GPU, using the CPU'));
  assert.ok(!isForwardedLogLine('2026-11-21 22:52:33,431 DEBUG lsp_server.completer: prompt 812 tokens'));
  assert.ok(!isForwardedLogLine('2026-11-21 22:52:33,431 WARNING transformers: something'));
  assert.ok(!isForwardedLogLine('Traceback (most recent call last):'));
});
