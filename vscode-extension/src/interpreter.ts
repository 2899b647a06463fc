// Which Python runs the server, and the command line that starts it.
//
// Pure: the file system and the environment come in as arguments, so the choice is unit-tested
// without VS Code and without touching the real PATH.

export interface InterpreterEnvironment {
  /** process.env (PATH, and PATHEXT on Windows). */
  env: Record<string, string | undefined>;
  /** process.platform. */
  platform: string;
  /** The user's home directory, for a `~/...` setting. */
  homeDir: string;
  /** The first workspace folder, for `${workspaceFolder}` in the setting. */
  workspaceFolder?: string;
  /** True when the path names an existing regular file that may be executed. */
  isExecutable: (path: string) => boolean;
}

export type InterpreterChoice =
  | { ok: true; path: string; source: 'setting' | 'path' }
  | { ok: false; message: string };

const SETTING = 'santacoder.pythonPath';

/**
 * The `santacoder.pythonPath` setting when it is set, else the first `python3` (then `python`)
 * on PATH, which is the active one when a virtual environment or conda env is activated.
 * A failed choice carries one message that tells the user what to do.
 */
export function chooseInterpreter(configured: string | undefined, host: InterpreterEnvironment): InterpreterChoice {
  const setting = (configured ?? '').trim();
  if (setting.length > 0) {
    const path = expandSetting(setting, host);
    if (!looksLikePath(path)) {
      const found = searchPath(path, host);
      if (found !== undefined) return { ok: true, path: found, source: 'setting' };
    } else if (host.isExecutable(path)) {
      return { ok: true, path, source: 'setting' };
    }
    return {
      ok: false,
      message:
        `The Python interpreter "${setting}" from ${SETTING} was not found or cannot be run. ` +
        `Set ${SETTING} to a Python (3.10+) that has santacoder-lsp installed, or clear it to use the python3 on PATH.`,
    };
  }
  const names = host.platform === 'win32' ? ['python', 'python3'] : ['python3', 'python'];
  for (const name of names) {
    const found = searchPath(name, host);
    if (found !== undefined) return { ok: true, path: found, source: 'path' };
  }
  return {
    ok: false,
    message:
      `No Python found on PATH. Install Python 3.10+ with santacoder-lsp (pip install santacoder-lsp, ` +
      `or pip install -e . in the repository), then set ${SETTING} to that interpreter.`,
  };
}

/** `~` and `${workspaceFolder}`/`${userHome}` in the setting, the way other Python extensions allow. */
export function expandSetting(value: string, host: Pick<InterpreterEnvironment, 'homeDir' | 'workspaceFolder'>): string {
  let expanded = value.replace(/\$\{userHome\}/g, host.homeDir);
  if (host.workspaceFolder !== undefined) {
    expanded = expanded.replace(/\$\{workspaceFolder\}/g, host.workspaceFolder);
  }
  if (expanded === '~' || expanded.startsWith('~/') || expanded.startsWith('~\\')) {
    expanded = host.homeDir + expanded.slice(1);
  }
  return expanded;
}

function looksLikePath(value: string): boolean {
  return value.includes('/') || value.includes('\\');
}

/** The first executable called `name` in the PATH directories, like a shell would find it. */
export function searchPath(name: string, host: InterpreterEnvironment): string | undefined {
  const windows = host.platform === 'win32';
  const pathVar = windows ? (host.env.PATH ?? host.env.Path ?? '') : (host.env.PATH ?? '');
  const separator = windows ? ';' : ':';
  const slash = windows ? '\\' : '/';
  const extensions = windows ? ['', ...(host.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';').map((e) => e.toLowerCase())] : [''];
  for (const dir of pathVar.split(separator)) {
    if (dir.length === 0) continue;
    const base = dir.endsWith(slash) ? dir : dir + slash;
    for (const extension of extensions) {
      const candidate = base + name + extension;
      if (host.isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}

export interface ServerCommand {
  command: string;
  args: string[];
}

/**
 * `<python> -m lsp_server --stdio [extra args]`. The module form rather than the
 * `santacoder-lsp` script so the chosen interpreter is the one that runs, whatever the PATH.
 * `--stdio` is passed here because the client must not add it (no TransportKind for executables).
 */
export function serverCommand(python: string, extraArgs: readonly string[] = []): ServerCommand {
  return { command: python, args: ['-m', 'lsp_server', '--stdio', ...extraArgs] };
}
