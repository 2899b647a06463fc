// The language client's life: choose the interpreter, check it, start the server over stdio,
// restart it on demand, and turn every failure into one message (status.ts, diagnosis.ts).
//
// Restarts are serialised on one promise chain, so a burst of setting changes never runs two
// servers at once. Notifications from vscode-languageclient itself are silenced (QuietClient):
// the controller shows the one message a user sees; the client still logs to the output channel.
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as readline from 'node:readline';
import * as vscode from 'vscode';
import {
  CloseAction,
  CloseHandlerResult,
  DidChangeConfigurationNotification,
  ErrorAction,
  ErrorHandlerResult,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  State,
} from 'vscode-languageclient/node';
import { describeServerFailure, isForwardedLogLine, parsePreflight, PREFLIGHT_SCRIPT } from './diagnosis';
import { chooseInterpreter, serverCommand } from './interpreter';
import { DeclaredSetting, SECTION, serverOptions, ServerOptions } from './settings';
import { ModelDescription, stateFromModel } from './status';
import { StatusBar } from './statusBar';

export const STATS_REQUEST = 'santacoder/stats';

/** Every file and untitled buffer: the server applies santacoder.enable (languages) itself. */
const DOCUMENT_SELECTOR = [{ scheme: 'file' }, { scheme: 'untitled' }];
const PREFLIGHT_TIMEOUT_MS = 30_000;
const MODEL_POLL_MS = 1_000;
const STDERR_TAIL_LINES = 40;
const CRASH_WINDOW_MS = 180_000;
const MAX_CRASHES_IN_WINDOW = 3;

class QuietClient extends LanguageClient {
  override error(message: string, data?: unknown): void {
    super.error(message, data, false);
  }
}

export class ServerController implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private python = '';
  private stderrTail: string[] = [];
  private crashTimes: number[] = [];
  private chain: Promise<void> = Promise.resolve();
  private disposed = false;

  constructor(
    private readonly extensionId: string,
    private readonly declared: readonly DeclaredSetting[],
    private readonly output: vscode.LogOutputChannel,
    private readonly status: StatusBar,
  ) {}

  /** Stops the running server (if any) and starts a new one with the current settings. */
  restart(reason: string): Promise<void> {
    this.chain = this.chain
      .then(async () => {
        if (this.disposed) return;
        this.output.info(`(Re)starting the server: ${reason}`);
        this.status.set({ kind: 'starting', model: String(this.currentOptions().model ?? '') });
        await this.stopClient();
        await this.startClient();
      })
      // Keep the chain usable for the next restart whatever went wrong in this one.
      .catch((error) => this.fail(`SantaCoder could not start its server: ${messageOf(error)}. See the SantaCoder output.`));
    return this.chain;
  }

  /** Sends the live (non-restart) settings to the running server. */
  async pushSettings(): Promise<void> {
    const client = this.client;
    if (client === undefined || !client.isRunning()) return;
    const settings = this.currentOptions();
    this.output.info(`Sending settings ${JSON.stringify(settings)}`);
    await client.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: settings } });
  }

  /** The server's `santacoder/stats` answer. */
  async stats(): Promise<unknown> {
    const client = this.client;
    if (client === undefined || !client.isRunning()) throw new Error('the SantaCoder server is not running');
    return client.sendRequest(STATS_REQUEST, {});
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.chain.catch(() => undefined);
    await this.stopClient();
  }

  private currentOptions(): ServerOptions {
    const config = vscode.workspace.getConfiguration(SECTION);
    return serverOptions(this.declared, (key) => config.get(key));
  }

  private async startClient(): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const options = this.currentOptions();
    const model = String(options.model ?? '');
    this.status.set({ kind: 'starting', model });

    const choice = chooseInterpreter(config.get<string>('pythonPath'), {
      env: process.env,
      platform: process.platform,
      homeDir: os.homedir(),
      workspaceFolder: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
      isExecutable,
    });
    if (!choice.ok) return this.fail(choice.message);
    this.python = choice.path;
    const preflight = parsePreflight(choice.path, await runPreflight(choice.path));
    if (!preflight.ok) return this.fail(preflight.message);
    this.output.info(`Python ${preflight.version} at ${preflight.executable} (from ${choice.source === 'setting' ? 'santacoder.pythonPath' : 'PATH'})`);

    const { command, args } = serverCommand(choice.path, config.get<string[]>('serverArgs') ?? []);
    this.output.info(`Starting ${command} ${args.join(' ')} with initializationOptions ${JSON.stringify(options)}`);
    this.stderrTail = [];
    const client = new QuietClient(
      'santacoder',
      'SantaCoder',
      // No `transport`: stdio is the default, and with TransportKind.stdio the client would add --stdio again.
      { command, args, options: { env: { ...process.env, PYTHONUNBUFFERED: '1' } } },
      this.clientOptions(options),
    );
    this.client = client;
    client.onDidChangeState((event) => {
      if (this.client !== client) return;
      if (event.newState === State.Starting) this.status.set({ kind: 'starting', model });
      if (event.newState === State.Running) void this.watchModel(client, model);
    });
    try {
      await client.start();
    } catch (error) {
      if (this.client !== client) return; // replaced by a newer restart meanwhile
      this.client = undefined;
      await client.dispose().catch(() => undefined);
      return this.fail(describeServerFailure({ phase: 'start', error: messageOf(error), stderrTail: this.stderrTail, python: this.python }));
    }
    // vscode-languageclient registers a VS Code command for each command listed here, so an
    // accepted item's command (santacoder.accepted, which the server always lists) reaches it.
    const commands = client.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
    this.output.info(`Server running; it handles the commands [${commands.join(', ')}]`);
  }

  /**
   * The server answers `initialize` at once and loads the model afterwards, so "running" is
   * not "ready": poll `santacoder/stats` until the model is loaded or has failed. A failed load
   * is already shown by the server (window/showMessage), so it only turns the status red here.
   */
  private async watchModel(client: LanguageClient, model: string): Promise<void> {
    this.status.set({ kind: 'starting', model, loading: true });
    while (this.client === client && client.isRunning()) {
      let description: ModelDescription | undefined;
      try {
        description = ((await client.sendRequest(STATS_REQUEST, {})) as { model?: ModelDescription } | null)?.model;
      } catch (error) {
        this.output.warn(`${STATS_REQUEST} failed (${messageOf(error)}); assuming the model is ready`);
      }
      if (this.client !== client) return;
      const state = stateFromModel(description, model);
      if (state !== undefined) {
        if (state.kind === 'error') this.output.error(state.message);
        if (state.kind === 'ready') this.output.info(`Model "${state.model}" ready${state.device ? ` on ${state.device}` : ''}`);
        this.status.set(state);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, MODEL_POLL_MS));
    }
  }

  private clientOptions(options: ServerOptions): LanguageClientOptions {
    return {
      documentSelector: DOCUMENT_SELECTOR,
      initializationOptions: options,
      outputChannel: this.output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationFailedHandler: () => false, // start() rejects and startClient() reports it once
      errorHandler: {
        error: (_error, _message, count): ErrorHandlerResult => ({
          action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
          handled: true,
        }),
        closed: () => this.onClosed(),
      },
      stdioOptions: {
        stdout: (input) => this.pipeLines(input, false),
        stderr: (input) => this.pipeLines(input, true),
      },
      middleware: {
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (!vscode.workspace.getConfiguration(SECTION).get<boolean>('inlineCompletions', true)) return null;
          const startedMs = performance.now();
          const result = await next(document, position, context, token);
          const items = result === null || result === undefined ? [] : Array.isArray(result) ? result : result.items;
          if (!token.isCancellationRequested && items.length > 0) this.status.recordLatency(performance.now() - startedMs);
          return result;
        },
        executeCommand: async (command, args, next) => {
          // Runs when the user accepts an item carrying a server command (santacoder.accepted).
          const result = await next(command, args);
          this.output.info(`Server command ${command} sent`);
          return result;
        },
        workspace: {
          // A server that pulls its settings gets the same flat object as initializationOptions,
          // not VS Code's section with the client-only settings in it.
          configuration: async (params, token, next) => {
            const answer = await next(params, token);
            if (!Array.isArray(answer)) return answer;
            return params.items.map((item, i) => (item.section === SECTION ? this.currentOptions() : answer[i]));
          },
        },
      },
    };
  }

  private onClosed(): CloseHandlerResult {
    const client = this.client;
    if (client === undefined || this.disposed || client.state === State.Starting) {
      // An intentional stop, or a failed start that startClient() reports.
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    const nowMs = Date.now();
    this.crashTimes = [...this.crashTimes.filter((t) => nowMs - t < CRASH_WINDOW_MS), nowMs];
    if (this.crashTimes.length <= MAX_CRASHES_IN_WINDOW) {
      this.output.warn(`The server exited; restarting it (${this.crashTimes.length} of ${MAX_CRASHES_IN_WINDOW} in 3 minutes).`);
      return { action: CloseAction.Restart, handled: true };
    }
    this.client = undefined;
    this.fail(describeServerFailure({ phase: 'crash', stderrTail: this.stderrTail, python: this.python }));
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private pipeLines(input: NodeJS.ReadableStream, isStderr: boolean): void {
    readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on('line', (line) => {
      if (isStderr) {
        this.stderrTail.push(line);
        if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
      }
      // Once running, the server's own log records also arrive as window/logMessage.
      if (isStderr && this.client?.isRunning() && isForwardedLogLine(line)) return;
      this.output.info(`[server] ${line}`);
    });
  }

  /** Shows the one message of a failure; does not wait for the user to answer it. */
  private fail(message: string): void {
    this.output.error(message);
    this.status.set({ kind: 'error', message });
    void vscode.window.showErrorMessage(message, 'Open Settings', 'Show Output', 'Restart').then(async (choice) => {
      if (choice === 'Open Settings') await vscode.commands.executeCommand('workbench.action.openSettings', `@ext:${this.extensionId}`);
      if (choice === 'Show Output') this.output.show(true);
      if (choice === 'Restart') void this.restart('requested from the error message');
    });
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client === undefined) return;
    try {
      await client.dispose(5000);
    } catch (error) {
      this.output.warn(`Stopping the server: ${messageOf(error)}`);
    }
  }
}

function isExecutable(path: string): boolean {
  try {
    if (!fs.statSync(path).isFile()) return false;
    if (process.platform !== 'win32') fs.accessSync(path, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function runPreflight(python: string): Promise<{ stdout: string; stderr: string; exitCode: number | null; spawnError?: string }> {
  return new Promise((resolve) => {
    cp.execFile(python, ['-c', PREFLIGHT_SCRIPT], { timeout: PREFLIGHT_TIMEOUT_MS, windowsHide: true }, (error, stdout, stderr) => {
      const code = (error as NodeJS.ErrnoException | null)?.code;
      const spawnError = typeof code === 'string' ? code : error?.killed ? 'timed out' : undefined;
      const exitCode = error === null ? 0 : typeof code === 'number' ? code : null;
      resolve({ stdout, stderr, exitCode, spawnError });
    });
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
