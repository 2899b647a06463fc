// What the status bar item shows in each state of the server. Pure; statusBar.ts draws it.

export type ServerState =
  | { kind: 'starting'; model: string; loading?: boolean }
  | { kind: 'ready'; model: string; device?: string; lastLatencyMs?: number }
  | { kind: 'error'; message: string }
  | { kind: 'stopped' };

export interface StatusView {
  text: string;
  tooltip: string;
  /** The command run on click. */
  command: string;
  /** Drawn with the error background. */
  error: boolean;
}

export const TOGGLE_COMMAND = 'santacoder.toggleCompletions';
export const SHOW_OUTPUT_COMMAND = 'santacoder.showOutput';
export const RESTART_COMMAND = 'santacoder.restartServer';

/** The item for a server state; `enabled` is the santacoder.enable setting. */
export function statusView(state: ServerState, enabled: boolean): StatusView {
  switch (state.kind) {
    case 'starting':
      return {
        text: '$(loading~spin) SantaCoder',
        tooltip: `SantaCoder: ${state.loading ? 'loading' : 'starting the server for'} model "${state.model}"… Click to turn inline completions ${enabled ? 'off' : 'on'}.`,
        command: TOGGLE_COMMAND,
        error: false,
      };
    case 'ready': {
      const latency = state.lastLatencyMs === undefined ? '' : ` ${Math.round(state.lastLatencyMs)} ms`;
      if (!enabled) {
        return {
          text: '$(circle-slash) SantaCoder',
          tooltip: `SantaCoder (model "${state.model}"): inline completions are off. Click to turn them on.`,
          command: TOGGLE_COMMAND,
          error: false,
        };
      }
      const last =
        state.lastLatencyMs === undefined ? 'no completion yet' : `last completion took${latency} (request to answer)`;
      return {
        text: `$(sparkle) SantaCoder${latency}`,
        tooltip: `SantaCoder (model "${state.model}"${state.device ? ` on ${state.device}` : ''}): ready, ${last}. Click to turn inline completions off.`,
        command: TOGGLE_COMMAND,
        error: false,
      };
    }
    case 'error':
      return {
        text: '$(error) SantaCoder',
        tooltip: `SantaCoder: ${state.message} Click to show the output.`,
        command: SHOW_OUTPUT_COMMAND,
        error: true,
      };
    case 'stopped':
      return {
        text: '$(debug-stop) SantaCoder',
        tooltip: 'SantaCoder: the server is stopped. Click to restart it.',
        command: RESTART_COMMAND,
        error: false,
      };
  }
}

/** The `model` part of the server's `santacoder/stats` answer (lsp_server EngineHost.describe). */
export interface ModelDescription {
  state?: string; // idle | loading | ready | failed
  name?: string | null;
  error?: string;
  device?: string;
  dtype?: string;
}

/**
 * The state to show once the server runs, from its model description; undefined while the
 * model is still loading (keep polling). A server without a description counts as ready.
 */
export function stateFromModel(model: ModelDescription | undefined, configuredModel: string): ServerState | undefined {
  const name = model?.name ?? configuredModel;
  switch (model?.state) {
    case 'loading':
    case 'idle':
      return undefined;
    case 'failed':
      return { kind: 'error', message: `model "${name}" did not load: ${model.error ?? 'unknown error'}.` };
    case 'ready':
      return { kind: 'ready', model: name, device: [model.device, model.dtype].filter(Boolean).join(', ') || undefined };
    default:
      return { kind: 'ready', model: name };
  }
}
