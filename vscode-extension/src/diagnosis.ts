// Turning a failed start into one message that says what to do.
//
// Before the language client starts, the chosen interpreter runs PREFLIGHT_SCRIPT: it checks the
// Python version and that the server's packages are importable, without importing them (torch
// alone takes seconds). A server that still fails later is described by the last error line it
// wrote to stderr: the server's own errors are written to be read by a user. Pure.

export const MIN_PYTHON: readonly [number, number] = [3, 10];

/** Modules the server needs; found with importlib.util.find_spec, never imported. */
export const REQUIRED_MODULES: readonly string[] = ['lsp_server', 'model_runtime', 'pygls', 'torch', 'transformers'];

export const PREFLIGHT_SCRIPT = [
  'import importlib.util, json, sys',
  `mods = ${JSON.stringify(REQUIRED_MODULES)}`,
  'missing = [m for m in mods if importlib.util.find_spec(m) is None]',
  'print(json.dumps({"version": list(sys.version_info[:3]), "executable": sys.executable, "missing": missing}))',
].join('\n');

export type Preflight = { ok: true; version: string; executable: string } | { ok: false; message: string };

const SETTING = 'santacoder.pythonPath';

/** Reads PREFLIGHT_SCRIPT's output. `spawnError` is set when the interpreter could not run at all. */
export function parsePreflight(
  python: string,
  result: { stdout: string; stderr: string; exitCode: number | null; spawnError?: string },
): Preflight {
  if (result.spawnError !== undefined) {
    return {
      ok: false,
      message: `Could not run the Python interpreter "${python}" (${result.spawnError}). Set ${SETTING} to a working Python 3.10+ with santacoder-lsp installed.`,
    };
  }
  const line = result.stdout.trim().split(/\r?\n/).pop() ?? '';
  let report: { version?: number[]; executable?: string; missing?: string[] };
  try {
    report = JSON.parse(line);
  } catch {
    const detail = lastErrorLine(result.stderr) ?? `exit code ${result.exitCode}`;
    return {
      ok: false,
      message: `"${python}" does not behave like Python 3 (${detail}). Set ${SETTING} to a Python 3.10+ with santacoder-lsp installed.`,
    };
  }
  const version = (report.version ?? []).join('.');
  const [major, minor] = report.version ?? [0, 0];
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    return {
      ok: false,
      message: `"${python}" is Python ${version}; santacoder-lsp needs Python ${MIN_PYTHON.join('.')}+. Set ${SETTING} to a newer interpreter.`,
    };
  }
  const missing = report.missing ?? [];
  if (missing.length > 0) {
    const what = missing.includes('lsp_server') || missing.includes('model_runtime') ? 'santacoder-lsp' : missing.join(', ');
    return {
      ok: false,
      message:
        `The Python at "${report.executable ?? python}" lacks ${what} (missing modules: ${missing.join(', ')}). ` +
        `Install it there (pip install -e . in the santacoder-lsp repository, torch first), or set ${SETTING} to the interpreter where it is installed.`,
    };
  }
  return { ok: true, version, executable: report.executable ?? python };
}

/**
 * The line of a stderr tail that best explains a failure: the exception line of the last Python
 * traceback (the first unindented line after `Traceback ...`), else the last `SomeError: ...`
 * line, else the last line mentioning an error, else the last non-empty line.
 */
export function lastErrorLine(stderr: string | readonly string[]): string | undefined {
  const raw = (typeof stderr === 'string' ? stderr.split(/\r?\n/) : [...stderr]).filter((l) => l.trim().length > 0);
  const traceback = raw.map((l) => l.trim()).lastIndexOf('Traceback (most recent call last):');
  if (traceback >= 0) {
    const exception = raw.slice(traceback + 1).find((l) => !/^\s/.test(l));
    if (exception !== undefined) return exception.trim();
  }
  const lines = raw.map((l) => l.trim());
  const exception = /^([A-Za-z_][\w.]*)?(Error|Exception)\b[^:]*: .+/;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (exception.test(lines[i])) return lines[i];
  }
  for (let i = lines.length - 1; i >= 0; i--) {
    if (/error/i.test(lines[i])) return lines[i];
  }
  return lines[lines.length - 1];
}

/** The one message shown when the server exits or fails its initialize request. */
export function describeServerFailure(failure: {
  phase: 'start' | 'crash';
  error?: string;
  stderrTail: readonly string[];
  python: string;
}): string {
  const reason = lastErrorLine(failure.stderrTail) ?? failure.error ?? 'it exited without a message';
  const when = failure.phase === 'start' ? 'failed to start' : 'stopped repeatedly and will not be restarted';
  return (
    `The SantaCoder server (${failure.python} -m lsp_server) ${when}: ${reason}. ` +
    'Check santacoder.model, santacoder.device and santacoder.quantization, then run "SantaCoder: Restart Server".'
  );
}

/**
 * True for a stderr line that is one of the server's own log records (lsp_server/__main__.py's
 * format, loggers lsp_server and model_runtime, INFO and above): once the client is initialized
 * the server also sends those as window/logMessage, so the output channel shows them once.
 */
export function isForwardedLogLine(line: string): boolean {
  return /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ (INFO|WARNING|ERROR|CRITICAL) (lsp_server|model_runtime)[\w.]*: /.test(line);
}
