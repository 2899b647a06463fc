import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseInterpreter, expandSetting, InterpreterEnvironment, searchPath, serverCommand } from '../src/interpreter';

function host(files: string[], env: Record<string, string>, platform = 'linux'): InterpreterEnvironment {
  return { env, platform, homeDir: '/home/ada', workspaceFolder: '/work/proj', isExecutable: (p) => files.includes(p) };
}

test('the setting wins over PATH', () => {
  const h = host(['/opt/venv/bin/python', '/usr/bin/python3'], { PATH: '/usr/bin' });
  assert.deepEqual(chooseInterpreter('/opt/venv/bin/python', h), { ok: true, path: '/opt/venv/bin/python', source: 'setting' });
});

test('without a setting: the first python3 on PATH, then python', () => {
  const h = host(['/venv/bin/python', '/usr/bin/python3', '/usr/local/bin/python3'], { PATH: '/venv/bin:/usr/local/bin:/usr/bin' });
  assert.deepEqual(chooseInterpreter('', h), { ok: true, path: '/usr/local/bin/python3', source: 'path' });
  const onlyPython = host(['/venv/bin/python'], { PATH: '/venv/bin:/usr/bin' });
  assert.deepEqual(chooseInterpreter(undefined, onlyPython), { ok: true, path: '/venv/bin/python', source: 'path' });
});

test('a bare name in the setting is looked up on PATH', () => {
  const h = host(['/usr/bin/python3.11'], { PATH: '/usr/local/bin:/usr/bin/' });
  assert.deepEqual(chooseInterpreter('python3.11', h), { ok: true, path: '/usr/bin/python3.11', source: 'setting' });
});

test('~, ${userHome} and ${workspaceFolder} are expanded', () => {
  const h = host(['/home/ada/.venvs/sc/bin/python', '/work/proj/.venv/bin/python'], { PATH: '' });
  assert.equal(expandSetting('~/x', h), '/home/ada/x');
  assert.equal(expandSetting('${userHome}/x', h), '/home/ada/x');
  assert.deepEqual(chooseInterpreter('~/.venvs/sc/bin/python', h), { ok: true, path: '/home/ada/.venvs/sc/bin/python', source: 'setting' });
  assert.deepEqual(chooseInterpreter('${workspaceFolder}/.venv/bin/python', h), { ok: true, path: '/work/proj/.venv/bin/python', source: 'setting' });
});

test('a missing configured interpreter is reported, not replaced by PATH', () => {
  const h = host(['/usr/bin/python3'], { PATH: '/usr/bin' });
  const choice = chooseInterpreter('/nope/python', h);
  assert.equal(choice.ok, false);
  assert.match(!choice.ok ? choice.message : '', /santacoder\.pythonPath/);
  assert.match(!choice.ok ? choice.message : '', /\/nope\/python/);
});

test('no Python at all says how to install one', () => {
  const choice = chooseInterpreter('', host([], { PATH: '/usr/bin:/bin' }));
  assert.equal(choice.ok, false);
  assert.match(!choice.ok ? choice.message : '', /No Python found on PATH.*pip install/);
});

test('Windows: Path, PATHEXT and python before python3', () => {
  const h = host(['C:\\Py\\python.exe', 'C:\\Py\\python3.exe'], { Path: 'C:\\Windows;C:\\Py', PATHEXT: '.COM;.EXE' }, 'win32');
  assert.deepEqual(chooseInterpreter('', h), { ok: true, path: 'C:\\Py\\python.exe', source: 'path' });
  assert.equal(searchPath('python3', h), 'C:\\Py\\python3.exe');
});

test('the server runs as a module of the chosen interpreter, with --stdio once', () => {
  assert.deepEqual(serverCommand('/venv/bin/python'), { command: '/venv/bin/python', args: ['-m', 'lsp_server', '--stdio'] });
  assert.deepEqual(serverCommand('py', ['--log-level', 'debug']).args, ['-m', 'lsp_server', '--stdio', '--log-level', 'debug']);
});
