// Settings of the `santacoder.*` section, turned into what the server and the client need.
//
// package.json is the single source of setting names and defaults: this module never repeats a
// default, it only says which settings belong to the client and which of the rest need a
// restart. Every other setting is passed to the server under its own name, so a new server
// setting needs only a new package.json entry. Pure: no VS Code API here, so node --test runs it.

export const SECTION = 'santacoder';

/** Settings the client consumes itself; they are never sent to the server. */
export const CLIENT_ONLY_KEYS: readonly string[] = ['inlineCompletions', 'pythonPath', 'serverArgs', 'trace.server'];

/**
 * Server settings that decide how the model is loaded (lsp_server/settings.py, load_options):
 * changing one restarts the server, which frees the old model's memory before the new one loads.
 * The remote backend's own settings (serverUrl, serverModel, apiKeyEnv, timeouts) only reconnect.
 * The other server settings are sent with workspace/didChangeConfiguration and apply to the next
 * request.
 */
export const RESTART_KEYS: readonly string[] = ['model', 'device', 'dtype', 'quantization', 'trustRemoteCode', 'kvCacheMb', 'backend'];

/** Client settings whose change restarts the server (a different interpreter or command line). */
export const CLIENT_RESTART_KEYS: readonly string[] = ['pythonPath', 'serverArgs'];

export type SettingValue = string | number | boolean | string[] | { [key: string]: boolean } | null;
export type ServerOptions = Record<string, SettingValue>;

/** What the extension declares in package.json `contributes.configuration.properties`. */
export interface DeclaredSetting {
  /** The name without the `santacoder.` prefix, e.g. `maxNewTokens`. */
  key: string;
  default: SettingValue;
}

/** Reads the declared settings out of a parsed package.json. */
export function declaredSettings(packageJson: unknown): DeclaredSetting[] {
  const properties = (packageJson as { contributes?: { configuration?: { properties?: unknown } } })
    ?.contributes?.configuration?.properties;
  if (properties === undefined || properties === null || typeof properties !== 'object') {
    throw new Error('package.json declares no contributes.configuration.properties');
  }
  const prefix = `${SECTION}.`;
  return Object.entries(properties as Record<string, { default?: SettingValue }>)
    .filter(([name]) => name.startsWith(prefix))
    .map(([name, schema]) => ({ key: name.slice(prefix.length), default: schema.default ?? null }));
}

/** The names of the settings sent to the server, in package.json order. */
export function serverKeys(declared: readonly DeclaredSetting[]): string[] {
  return declared.map((s) => s.key).filter((key) => !CLIENT_ONLY_KEYS.includes(key));
}

/**
 * The server's initializationOptions (and didChangeConfiguration settings): a flat object with
 * one entry per server setting. `lookup` returns the effective value of `santacoder.<key>`
 * (VS Code fills in the package.json default); an undefined value falls back to the declared one.
 */
export function serverOptions(
  declared: readonly DeclaredSetting[],
  lookup: (key: string) => unknown,
): ServerOptions {
  const options: ServerOptions = {};
  for (const setting of declared) {
    if (CLIENT_ONLY_KEYS.includes(setting.key)) continue;
    const value = lookup(setting.key);
    options[setting.key] = value === undefined ? setting.default : (value as SettingValue);
  }
  return options;
}

/** Whether a change of `santacoder.<key>` needs the server to be restarted. */
export function needsRestart(key: string): boolean {
  return RESTART_KEYS.includes(key) || CLIENT_RESTART_KEYS.includes(key);
}
