// The panel in a plain browser page on `keel serve --listen ws://`: the UI tests drive it in headless Chromium,
// and it is what a web frontend would embed. Query: ?ws=ws://127.0.0.1:PORT&workspace=/abs/dir[&token=…]
import type { PanelState } from "./backend";
import { directBackend } from "./directBackend";
import { Panel } from "./panel";

const query = new URLSearchParams(location.search);
const key = `keel-panel:${query.get("ws")}:${query.get("workspace")}`;
const store = {
  load: (): PanelState | undefined => {
    const saved = sessionStorage.getItem(key);
    return saved ? (JSON.parse(saved) as PanelState) : undefined;
  },
  save: (state: PanelState) => sessionStorage.setItem(key, JSON.stringify(state)),
};

async function main() {
  const backend = await directBackend(query.get("ws") ?? "", query.get("workspace") ?? "/", query.get("token") ?? undefined);
  await new Panel(document.getElementById("keel")!, backend, store).start();
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.body.dataset.error = String(error);
  document.getElementById("keel")!.textContent = `Cannot reach keel: ${error}`;
});
