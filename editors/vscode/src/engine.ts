// The engine connection of the extension: a `keel serve` started for the workspace on stdio, or an engine already
// listening on a socket. The client reconnects by itself; a started engine that dies is started again and resumes
// where the last one stopped.
import { KeelClient, stdio, unixSocket, webSocket } from "../../sdk-ts/src/index";
import type { KeelClientOptions, Connector } from "../../sdk-ts/src/index";
import type { Settings } from "./settings";

export function connector(settings: Settings, workspace: string): Connector {
  if (settings.connect.startsWith("unix:")) return unixSocket(settings.connect.slice("unix:".length));
  if (settings.connect.startsWith("ws://")) return webSocket(settings.connect);
  const env = { ...process.env };
  if (settings.home) env.KEEL_HOME = settings.home;
  return stdio({ bin: settings.binaryPath, cwd: workspace, env });
}

export function openEngine(
  settings: Settings,
  workspace: string,
  onApproval: KeelClientOptions["onApproval"],
): Promise<KeelClient> {
  return KeelClient.open({
    connect: connector(settings, workspace),
    clientInfo: { name: "keel-vscode", version: "0.1.0" },
    deltas: true,
    onApproval,
    reconnect: { initialDelayMs: 200, maxDelayMs: 5000 },
  });
}
