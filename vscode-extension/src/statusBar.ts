// The status bar item: draws status.ts's view of the server state.
import * as vscode from 'vscode';
import { ServerState, statusView } from './status';

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('santacoder.status', vscode.StatusBarAlignment.Right, 100);
  private state: ServerState = { kind: 'stopped' };

  constructor(private readonly isEnabled: () => boolean) {
    this.item.name = 'SantaCoder';
    this.draw();
    this.item.show();
  }

  get current(): ServerState {
    return this.state;
  }

  set(state: ServerState): void {
    this.state = state;
    this.draw();
  }

  /** Records the round trip of a completion that returned items (only while ready). */
  recordLatency(latencyMs: number): void {
    if (this.state.kind === 'ready') this.set({ ...this.state, lastLatencyMs: latencyMs });
  }

  /** Redraws after santacoder.enable changed. */
  draw(): void {
    const view = statusView(this.state, this.isEnabled());
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.command = view.command;
    this.item.backgroundColor = view.error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
