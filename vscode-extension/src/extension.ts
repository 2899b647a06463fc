// Entry point: wires the output channel, the status bar item, the commands and the server.
// Inline completions themselves come from vscode-languageclient's standard feature.
import * as vscode from 'vscode';
import { ServerController } from './serverController';
import { declaredSettings, needsRestart, SECTION, serverKeys } from './settings';
import { RESTART_COMMAND, SHOW_OUTPUT_COMMAND, TOGGLE_COMMAND } from './status';
import { StatusBar } from './statusBar';

let controller: ServerController | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const declared = declaredSettings(context.extension.packageJSON);
  const output = vscode.window.createOutputChannel('SantaCoder', { log: true });
  const isEnabled = () => vscode.workspace.getConfiguration(SECTION).get<boolean>('inlineCompletions', true);
  const status = new StatusBar(isEnabled);
  const server = new ServerController(context.extension.id, declared, output, status);
  controller = server;

  context.subscriptions.push(
    output,
    status,
    vscode.commands.registerCommand(RESTART_COMMAND, () => server.restart('the Restart Server command')),
    vscode.commands.registerCommand(SHOW_OUTPUT_COMMAND, () => output.show(true)),
    vscode.commands.registerCommand(TOGGLE_COMMAND, async () => {
      await vscode.workspace.getConfiguration(SECTION).update('inlineCompletions', !isEnabled(), vscode.ConfigurationTarget.Global);
    }),
    vscode.commands.registerCommand('santacoder.showStats', async () => {
      try {
        const stats = await server.stats();
        output.info(`santacoder/stats ${JSON.stringify(stats, null, 2)}`);
        output.show(true);
      } catch (error) {
        void vscode.window.showWarningMessage(`SantaCoder statistics: ${error instanceof Error ? error.message : String(error)}`);
      }
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (!event.affectsConfiguration(SECTION)) return;
      const changed = declared.map((s) => s.key).filter((key) => event.affectsConfiguration(`${SECTION}.${key}`));
      if (changed.includes('inlineCompletions')) status.draw();
      if (changed.some(needsRestart)) {
        void server.restart(`changed ${changed.join(', ')}`);
      } else if (changed.some((key) => serverKeys(declared).includes(key))) {
        void server.pushSettings();
      }
    }),
  );
  void server.restart('activation');
}

export async function deactivate(): Promise<void> {
  await controller?.dispose();
  controller = undefined;
}
