// End-to-end test in the real VS Code: code-server serves it, Debian's Chromium shows it,
// playwright-core drives it, in a fresh user-data folder, extensions folder and HOME.
//
//   node ghost_text.e2e.mjs --vsix PATH [--artifacts DIR] [--keep]
//
// 1. installs the packaged extension, opens a Python file, waits for the status item to say
//    ready, types, waits for ghost text and screenshots it (ghost-text.png);
// 2. accepts with Tab, saves, and checks the file on disk has the suggestion after the typed
//    text, and that the item's command (santacoder.accepted) reached the server;
// 3. clicks the status item twice (completions off, on);
// 4. runs "SantaCoder: Restart Server" and gets ghost text from the new server;
// 5. sets a missing model, then a missing interpreter, and checks each gives exactly one error
//    message and a red status item.
//
// The server is `$SANTACODER_PYTHON -m lsp_server` (default: python3 on PATH) with the bundled
// tiny model, or $SANTACODER_E2E_MODEL. Exit code 0 on success; screenshots, the extension's
// log, code-server's log and the saved file land in the artifacts folder either way.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const CODE_SERVER_VERSION = process.env.CODE_SERVER_VERSION ?? '4.100.3';
const CODE_SERVER = join(HERE, '.cache', `code-server-${CODE_SERVER_VERSION}`, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const EXTENSION_ID = 'santacoder-lsp.santacoder-lsp';

// Budgets: model loading on a busy 2-core machine is the slow part.
const SERVER_READY_MS = 180_000;
const GHOST_TEXT_MS = 60_000;
const WORKBENCH_MS = 120_000;

// The file the test edits, and what it types at its end. A stdlib-flavoured function body so
// the tiny model (trained on the standard library and permissive PyPI packages) has something to continue.
const FILE_NAME = 'demo.py';
const FILE_TEXT = [
  'import os',
  '',
  '',
  'def list_python_files(directory):',
  '    """Return the paths of the .py files under directory."""',
  '    result = []',
  '    for root, dirs, files in os.walk(directory):',
  '        for name in files:',
  '            if name.endswith(".py"):',
  '',
].join('\n');
const TYPED = '                result.';

const { values: options } = parseArgs({
  options: {
    vsix: { type: 'string' },
    artifacts: { type: 'string', default: join(HERE, 'artifacts') },
    keep: { type: 'boolean', default: false },
  },
});
if (!options.vsix) fail('usage: node ghost_text.e2e.mjs --vsix PATH [--artifacts DIR] [--keep]');
const vsix = resolve(options.vsix);
const artifacts = resolve(options.artifacts);

const startedMs = Date.now();
const log = (message) => console.log(`[e2e ${((Date.now() - startedMs) / 1000).toFixed(1)}s] ${message}`);

function fail(message) {
  console.error(`[e2e] FAIL: ${message}`);
  process.exit(1);
}

/** The Python whose `lsp_server` is under test: $SANTACODER_PYTHON, else python3 on PATH. */
function python() {
  const name = process.env.SANTACODER_PYTHON ?? 'python3';
  const run = spawnSync(name, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  if (run.status !== 0) fail(`cannot run ${name}: ${run.stderr || run.error}`);
  return run.stdout.trim();
}

/** A fresh HOME, user-data and extensions folder, and a workspace with the test file. */
function makeSandbox() {
  const root = mkdtempSync(join(tmpdir(), 'santacoder-e2e-'));
  const dirs = {
    root,
    home: join(root, 'home'),
    userData: join(root, 'user-data'),
    extensions: join(root, 'extensions'),
    workspace: join(root, 'workspace'),
  };
  for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });
  mkdirSync(join(dirs.userData, 'User'), { recursive: true });
  // Quiet the workbench, and keep every other suggestion source away from Tab.
  const settings = {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'security.workspace.trust.enabled': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'extensions.ignoreRecommendations': true,
    'chat.disableAIFeatures': true,
    'editor.inlineSuggest.enabled': true,
    'editor.quickSuggestions': { other: false, comments: false, strings: false },
    'editor.suggestOnTriggerCharacters': false,
    'editor.wordBasedSuggestions': 'off',
    'editor.tabCompletion': 'off',
    'editor.autoIndent': 'none',
    'editor.autoClosingBrackets': 'never',
    'editor.autoClosingQuotes': 'never',
    'files.autoSave': 'off',
  };
  // Default: the setting's own default, the bundled tiny model.
  if (process.env.SANTACODER_E2E_MODEL) settings['santacoder.model'] = process.env.SANTACODER_E2E_MODEL;
  writeFileSync(join(dirs.userData, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
  // The extension host does not see this shell's PATH (code-server resolves a login shell's
  // environment), so name the interpreter the test runs with. santacoder.pythonPath is
  // machine-overridable: in a remote window (code-server is one) it lives in the Machine settings.
  mkdirSync(join(dirs.userData, 'Machine'), { recursive: true });
  writeFileSync(join(dirs.userData, 'Machine', 'settings.json'), JSON.stringify({ 'santacoder.pythonPath': python() }, null, 2));
  writeFileSync(join(dirs.workspace, FILE_NAME), FILE_TEXT);
  writeFileSync(join(root, 'config.yaml'), 'bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n');
  return dirs;
}

function codeServerArgs(dirs) {
  return [
    CODE_SERVER,
    '--config', join(dirs.root, 'config.yaml'),
    '--user-data-dir', dirs.userData,
    '--extensions-dir', dirs.extensions,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
  ];
}

function codeServerEnv(dirs) {
  // PATH is kept: the extension finds python3 there. HOME is not: nothing of the user's leaks in.
  return { ...process.env, HOME: dirs.home, XDG_CONFIG_HOME: join(dirs.home, '.config'), XDG_DATA_HOME: join(dirs.home, '.local/share') };
}

function installExtension(dirs) {
  const run = spawnSync(process.execPath, [...codeServerArgs(dirs), '--install-extension', vsix], { env: codeServerEnv(dirs), encoding: 'utf8' });
  if (run.status !== 0 || !/successfully installed/i.test(run.stdout + run.stderr)) {
    fail(`installing ${vsix} failed:\n${run.stdout}\n${run.stderr}`);
  }
  log(`installed ${vsix}`);
}

/** Starts code-server on a free port; resolves with its URL and the process. */
function startCodeServer(dirs) {
  const child = spawn(process.execPath, [...codeServerArgs(dirs), '--bind-addr', '127.0.0.1:0', '--auth', 'none', dirs.workspace], {
    env: codeServerEnv(dirs),
    detached: true, // its own process group, so the extension host and the server go with it
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`code-server did not start:\n${output}`)), 60_000);
    const onData = (chunk) => {
      output += chunk;
      const match = /HTTP server listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolvePromise({ child, url: match[1], output: () => output });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`code-server exited with ${code}:\n${output}`)));
  });
}

function stopCodeServer(child) {
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    // already gone
  }
}

/** Every file called `name` under `dir`. */
function findFiles(dir, name) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return findFiles(path, name);
    return entry === name ? [path] : [];
  });
}

/** The extension's log (its LogOutputChannel), which has the server's stderr and the LSP trace. */
function extensionLog(dirs) {
  return findFiles(join(dirs.userData, 'logs'), 'SantaCoder.log')
    .map((path) => readFileSync(path, 'utf8'))
    .join('\n');
}

async function statusBarText(page) {
  const item = page.locator(`[id="${EXTENSION_ID}.santacoder.status"]`);
  if ((await item.count()) === 0) return '';
  return (await item.first().innerHTML()).replace(/<[^>]+codicon-([\w~-]+)[^>]*><\/span>/g, '$($1)').replace(/<[^>]+>/g, '').trim();
}

/** Waits for the status item to say ready; fails fast with its tooltip if it says error. */
async function waitForServer(page) {
  const deadline = Date.now() + SERVER_READY_MS;
  let text = '';
  while (Date.now() < deadline) {
    text = await statusBarText(page);
    if (text.includes('$(sparkle)')) return text;
    if (text.includes('$(error)')) {
      const tooltip = await page.locator(`[id="${EXTENSION_ID}.santacoder.status"] a`).first().getAttribute('aria-label');
      throw new Error(`the extension reports an error: ${tooltip}`);
    }
    await page.waitForTimeout(500);
  }
  throw new Error(`the server was not ready after ${SERVER_READY_MS / 1000} s (status bar: "${text}")`);
}

async function openFile(page, name) {
  await page.keyboard.press('Control+P');
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
  await page.keyboard.type(name);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ state: 'visible' });
  await page.keyboard.press('Enter');
  await page.locator(`.tab.active[aria-label*="${name}"]`).waitFor({ state: 'visible' });
  await page.locator('.monaco-editor .view-lines').first().waitFor({ state: 'visible' });
}

/** The ghost text on screen (inline part, then extra lines), or '' while there is none. */
async function ghostText(page) {
  return page.evaluate(() => {
    const inline = [...document.querySelectorAll('.monaco-editor .ghost-text-decoration')].map((e) => e.textContent ?? '').join('');
    const lines = [...document.querySelectorAll('.monaco-editor .ghost-text .view-line')].map((e) => e.textContent ?? '');
    return [inline, ...lines].join('\n').replace(/\u00a0/g, ' ').replace(/\n+$/, '');
  });
}

/** Visible characters only: no control characters, non-breaking spaces as spaces, tabs as spaces. */
function printable(text) {
  return text.replace(/\u00a0|\t/g, ' ').replace(/[\u0000-\u001f\u007f-\u009f\u2400-\u243f\ufffd]/g, '');
}

async function waitForGhostText(page) {
  const startedMs = Date.now();
  let nextTriggerMs = startedMs + 10_000;
  while (Date.now() - startedMs < GHOST_TEXT_MS) {
    const text = await ghostText(page);
    if (text.trim().length > 0) return text;
    // Typing triggers requests; if the answers so far were empty (or the server was being
    // restarted), ask explicitly, as a user would with Alt+\.
    if (Date.now() > nextTriggerMs) {
      nextTriggerMs = Date.now() + 15_000;
      await runCommand(page, 'Trigger Inline Suggestion');
    }
    await page.waitForTimeout(200);
  }
  throw new Error(`no ghost text within ${GHOST_TEXT_MS / 1000} s`);
}

/**
 * Changes user settings the way a user does: in the settings.json editor, then save. (Writing
 * the file from outside is not noticed by code-server here.)
 */
async function updateSettings(page, dirs, patch, scope = 'User') {
  const path = join(dirs.userData, scope, 'settings.json');
  const settings = { ...JSON.parse(readFileSync(path, 'utf8')), ...patch };
  await runCommand(page, scope === 'User' ? 'Preferences: Open User Settings (JSON)' : 'Preferences: Open Remote Settings (JSON)');
  await page.locator('.tab.active[aria-label*="settings.json"]').waitFor({ state: 'visible' });
  await page.locator('.monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(JSON.stringify(settings, null, 2));
  await page.keyboard.press('Control+Shift+End'); // and drop what the editor auto-closed
  await page.keyboard.press('Delete');
  await page.keyboard.press('Control+S');
  const saved = () => {
    try {
      return JSON.stringify(JSON.parse(readFileSync(path, 'utf8'))) === JSON.stringify(settings);
    } catch {
      return false; // caught mid-write
    }
  };
  if (!(await waitUntil(page, saved, 10_000))) throw new Error(`${path} was not saved with ${JSON.stringify(patch)}`);
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
  await page.keyboard.type(title);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ state: 'visible' });
  await page.keyboard.press('Enter');
}

/** Texts of the error notifications on screen. */
async function errorToasts(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('.notifications-toasts .notification-toast')]
      .filter((toast) => toast.querySelector('.codicon-error') !== null)
      .map((toast) => (toast.querySelector('.notification-list-item-message')?.textContent ?? toast.textContent ?? '').trim()),
  );
}

/**
 * Breaks one setting and checks the user gets exactly one error message that matches `pattern`
 * (and a red status item), not silence and not a cascade.
 */
async function expectOneError(page, dirs, label, patch, pattern, scope = 'User') {
  await runCommand(page, 'Notifications: Clear All Notifications');
  await updateSettings(page, dirs, patch, scope);
  if (!(await waitUntil(page, async () => (await statusBarText(page)).includes('$(error)'), SERVER_READY_MS))) {
    throw new Error(`${label}: the status item never turned to error`);
  }
  await page.waitForTimeout(3_000); // time for a second message, if there were one
  const toasts = await errorToasts(page);
  await page.screenshot({ path: join(artifacts, `error-${label}.png`) });
  if (toasts.length !== 1 || !pattern.test(toasts[0])) {
    throw new Error(`${label}: expected one error message matching ${pattern}, got ${JSON.stringify(toasts)}`);
  }
  log(`${label}: one message: ${JSON.stringify(toasts[0])}`);
}

/** Polls `predicate` (sync or async) every 200 ms until it is true or `timeoutMs` passed. */
async function waitUntil(page, predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return true;
    await page.waitForTimeout(200);
  }
  return Boolean(await predicate());
}

/** Types TYPED at the end of the file on a new line or the current one; returns the ghost text. */
async function typeForGhostText(page, { newLine }) {
  await page.locator('.monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+End');
  if (newLine) await page.keyboard.press('Enter');
  await page.keyboard.type(TYPED, { delay: 40 });
  return waitForGhostText(page);
}

/** Tab, save, and the file on disk must have the suggestion right after the typed text. */
async function acceptAndCheckFile(page, dirs, ghost) {
  await page.keyboard.press('Tab');
  await page.waitForFunction(() => document.querySelectorAll('.monaco-editor .ghost-text-decoration').length === 0, null, { timeout: 5_000 }).catch(() => undefined);
  await page.keyboard.press('Control+S');
  const path = join(dirs.workspace, FILE_NAME);
  await waitUntil(page, () => readFileSync(path, 'utf8') !== FILE_TEXT, 10_000);
  const saved = readFileSync(path, 'utf8');
  await page.screenshot({ path: join(artifacts, 'accepted.png') });
  writeFileSync(join(artifacts, 'saved-' + FILE_NAME), saved);
  const before = FILE_TEXT + TYPED;
  const inline = ghost.split('\n')[0];
  const added = saved.startsWith(before) ? saved.slice(before.length) : undefined;
  // The editor draws control characters and tabs its own way, so compare printable text.
  if (added === undefined || added.length === 0 || !printable(added).startsWith(printable(inline))) {
    throw new Error(`the saved file does not contain the accepted suggestion ${JSON.stringify(inline)} after the typed text; saved:\n${saved}`);
  }
  return added;
}

async function main() {
  if (!existsSync(CODE_SERVER)) fail(`code-server is not installed; run ${join(HERE, 'install.sh')}`);
  if (!existsSync(vsix)) fail(`no extension package at ${vsix}`);
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });

  const dirs = makeSandbox();
  log(`sandbox ${dirs.root}`);
  installExtension(dirs);
  const server = await startCodeServer(dirs);
  log(`code-server at ${server.url}`);

  const launchArgs = ['--disable-gpu', '--disable-dev-shm-usage'];
  if (process.getuid?.() === 0) launchArgs.push('--no-sandbox');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: launchArgs });
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  let ok = false;
  try {
    await page.goto(`${server.url}/?folder=${encodeURIComponent(dirs.workspace)}`);
    await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: WORKBENCH_MS });
    log('workbench loaded');
    await openFile(page, FILE_NAME);
    log(`opened ${FILE_NAME}; server ready (status bar: "${await waitForServer(page)}")`);

    const ghost = await typeForGhostText(page, { newLine: false });
    log(`ghost text: ${JSON.stringify(ghost)}`);
    await page.waitForTimeout(300); // let the decoration settle before the picture
    await page.screenshot({ path: join(artifacts, 'ghost-text.png') });
    const added = await acceptAndCheckFile(page, dirs, ghost);
    log(`saved file has the suggestion after the typed text: ${JSON.stringify(added)}`);

    // The item's command reached the server (the extension logs it once the request returns).
    if (!(await waitUntil(page, () => /Server command santacoder\.accepted sent/.test(extensionLog(dirs)), 10_000))) {
      throw new Error('accepting the suggestion did not send workspace/executeCommand santacoder.accepted to the server');
    }
    log('acceptance reported to the server (workspace/executeCommand santacoder.accepted)');

    const item = page.locator(`[id="${EXTENSION_ID}.santacoder.status"] a`).first();
    for (const icon of ['$(circle-slash)', '$(sparkle)']) {
      await item.click();
      if (!(await waitUntil(page, async () => (await statusBarText(page)).includes(icon), 10_000))) {
        throw new Error(`clicking the status item did not show ${icon}`);
      }
    }
    log('the status item toggles completions off and on');

    await runCommand(page, 'SantaCoder: Restart Server');
    await waitUntil(page, async () => !(await statusBarText(page)).includes('$(sparkle)'), 5_000);
    log(`restarted (status bar: "${await waitForServer(page)}")`);
    log(`ghost text after the restart: ${JSON.stringify(await typeForGhostText(page, { newLine: true }))}`);
    await page.keyboard.press('Escape');

    // Each broken setting restarts the server and must end in one actionable message (the
    // interpreter is checked before the model, so the broken model can stay).
    await expectOneError(page, dirs, 'missing-model', { 'santacoder.model': join(dirs.root, 'no-such-model') }, /no-such-model.*does not exist/);
    await expectOneError(page, dirs, 'missing-python', { 'santacoder.pythonPath': join(dirs.root, 'no-such-python') }, /no-such-python.*santacoder\.pythonPath/, 'Machine');
    ok = true;
  } catch (error) {
    await page.screenshot({ path: join(artifacts, 'failure.png') }).catch(() => undefined);
    console.error(`[e2e] FAIL: ${error instanceof Error ? error.message : error}`);
  } finally {
    writeFileSync(join(artifacts, 'santacoder-extension.log'), extensionLog(dirs));
    writeFileSync(join(artifacts, 'code-server.log'), server.output());
    await browser.close().catch(() => undefined);
    stopCodeServer(server.child);
    if (options.keep) log(`kept ${dirs.root}`);
    else rmSync(dirs.root, { recursive: true, force: true });
  }
  log(`${ok ? 'PASS' : 'FAIL'}; artifacts in ${artifacts}`);
  process.exit(ok ? 0 : 1);
}

main().catch((error) => fail(error instanceof Error ? error.stack : String(error)));
