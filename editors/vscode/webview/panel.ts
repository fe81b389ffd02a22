// The chat panel: a picker of root sessions, the context usage line, the transcript, a composer with prompt / steer /
// interrupt and model and agent pickers. A subagent's session is opened from its `task` card and followed read-only;
// while a subagent runs, its session is also followed for its approvals. It renders each durable event once and remembers the rendered ones with their cursor, so that a reload (or a
// restarted engine) resumes from the cursor instead of starting over.
import type { ContextUsage, Event, Session, SessionStatus, Usage } from "../../sdk-ts/src/generated/protocol";
import type { Backend, PanelState, StateStore } from "./backend";
import { element } from "./render";
import { Transcript } from "./transcript";
import { usageLine } from "./usage";

/** Past this many events a reload replays the log instead of keeping them all in the panel's state. */
const CACHED_EVENTS = 5000;

export class Panel {
  private state: PanelState;
  private stopFollowing: (() => void) | undefined;
  /** Running subagents' sessions followed for their approvals, by child session id (undefined while starting). */
  private readonly children = new Map<string, (() => void) | undefined>();
  /** The session outgrew the cache: a reload replays it from the start. */
  private overflowed = false;
  private readonly transcript: Transcript;
  private readonly sessions = element("select", "sessions");
  private readonly models = element("select", "models");
  private readonly agents = element("select", "agents");
  private readonly status = element("span", "status", "no session");
  private readonly usage = element("div", "usage");
  /** Shown while the panel follows a subagent's session: read-only, with the way back to its parent. */
  private readonly subagentBanner = element("div", "subagent-banner");
  private readOnly = false;
  /** The list's entry for a followed subagent session, kept across re-listings. */
  private childOption: HTMLOptionElement | undefined;
  private relisting: ReturnType<typeof setTimeout> | undefined;
  /** The followed session's model, for the usage line. */
  private model = "";
  private readonly prompt = element("textarea", "prompt");
  private readonly send = element("button", "send", "Send");
  private readonly steer = element("button", "steer", "Steer");
  private readonly interrupt = element("button", "interrupt", "Interrupt");

  constructor(
    root: HTMLElement,
    private readonly backend: Backend,
    private readonly store: StateStore,
  ) {
    this.state = store.load() ?? { events: [], lastSeq: 0 };
    const header = element("header");
    const newSession = element("button", "new-session", "New");
    header.append(this.sessions, newSession, this.status);
    const log = element("main", "transcript");
    const footer = element("footer");
    this.prompt.placeholder = "Ask keel… (Ctrl+Enter sends; Steer joins the running turn)";
    const row = element("div", "composer-row");
    row.append(this.agents, this.models, this.send, this.steer, this.interrupt);
    footer.append(this.prompt, row);
    this.subagentBanner.hidden = true;
    root.replaceChildren(header, this.subagentBanner, this.usage, log, footer);
    this.transcript = new Transcript(log, {
      answerApproval: (approvalId, decision) => void this.backend.request("approval/respond", { approvalId, decision }),
      removeQueued: (inputId) => {
        const sessionId = this.state.sessionId;
        if (sessionId) void this.backend.request("session/queue/remove", { sessionId, inputId });
      },
      openDiff: backend.openDiff?.bind(backend),
      openSession: (sessionId) => void this.open(sessionId, false),
    });

    newSession.onclick = () => void this.createSession();
    this.sessions.onchange = () => void this.open(this.sessions.value, false);
    this.models.onchange = () => {
      this.state.model = this.models.value;
      this.save();
    };
    this.send.onclick = () => void this.submit("queue");
    this.steer.onclick = () => void this.submit("steer");
    this.interrupt.onclick = () => {
      if (this.state.sessionId) void this.backend.request("session/interrupt", { sessionId: this.state.sessionId });
    };
    this.prompt.onkeydown = (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void this.submit("queue");
    };
    backend.onDelta((d) => {
      if (d.sessionId === this.state.sessionId) this.transcript.delta(d);
    });
    backend.onStatus((s) => {
      if (s.sessionId === this.state.sessionId) this.showStatus(s.status);
      // Another session went idle: its title may be new (or the session is), so the list is read again.
      else if (s.status === "idle") this.relist();
    });
    backend.onUsage((u) => {
      if (u.sessionId === this.state.sessionId) this.showUsage(u.context, u.usage);
    });
  }

  async start() {
    await Promise.all([this.listSessions(), this.listModels(), this.listAgents()]);
    if (this.state.sessionId) await this.open(this.state.sessionId, true);
    else this.showStatus(undefined);
  }

  private async listSessions() {
    // Subagents' sessions are reached from their parent's `task` card, not listed here.
    const { sessions } = await this.backend.request("session/list", { cwd: this.backend.workspace, roots: true });
    const none = element("option", undefined, "— sessions —");
    none.value = "";
    this.sessions.replaceChildren(none);
    for (const s of sessions) {
      const option = element("option", undefined, s.title || s.id);
      option.value = s.id;
      this.sessions.appendChild(option);
    }
    if (this.childOption) this.sessions.appendChild(this.childOption);
    if (this.state.sessionId) this.sessions.value = this.state.sessionId;
  }

  /** Reads the list again soon, once for a burst of changes. */
  private relist() {
    clearTimeout(this.relisting);
    this.relisting = setTimeout(() => void this.listSessions().catch(() => {}), 300);
  }

  /** A session's title changed (`session.updated`): its entry in the list follows. */
  private retitle(sessionId: string, title: string) {
    for (const option of this.sessions.options) if (option.value === sessionId) option.textContent = this.readOnly ? `↳ ${title}` : title;
  }

  private async listModels() {
    const { models } = await this.backend.request("model/list", {});
    const preferred = this.state.model ?? this.backend.defaultModel;
    this.models.replaceChildren(element("option", undefined, "default model"));
    (this.models.firstChild as HTMLOptionElement).value = "";
    for (const m of models.filter((m) => m.available)) {
      const option = element("option", undefined, m.id);
      option.value = m.id;
      this.models.appendChild(option);
    }
    this.models.value = preferred;
  }

  /** The agents a prompt can choose (`agent/list`, modes primary and all); subagent-only ones are for `task`. */
  private async listAgents() {
    const { agents } = await this.backend.request("agent/list", { cwd: this.backend.workspace });
    this.agents.replaceChildren();
    for (const agent of agents.filter((a) => a.mode !== "subagent")) {
      const option = element("option", undefined, agent.name);
      option.value = agent.name;
      option.title = agent.description;
      this.agents.appendChild(option);
    }
    const names = agents.map((a) => a.name);
    this.agents.value = this.state.agent && names.includes(this.state.agent) ? this.state.agent : "build";
    this.agents.onchange = () => {
      this.state.agent = this.agents.value;
      this.save();
    };
  }

  private async createSession(): Promise<string> {
    const model = this.models.value || undefined;
    const { session } = await this.backend.request("session/create", { cwd: this.backend.workspace, model });
    await this.listSessions();
    await this.open(session.id, false);
    return session.id;
  }

  /** Shows a session: from the cached events and cursor after a reload, else from its beginning. */
  private async open(sessionId: string, fromCache: boolean) {
    this.stopFollowing?.();
    this.stopFollowing = undefined;
    for (const child of [...this.children.keys()]) this.unfollowChild(child);
    this.overflowed = false;
    this.transcript.clear();
    if (!sessionId) {
      // "— sessions —": no session; the next prompt creates one.
      this.state = { ...this.state, sessionId: undefined, events: [], lastSeq: 0 };
      this.showSubagent(undefined);
      this.showStatus(undefined);
      this.usage.textContent = "";
      this.save();
      return;
    }
    if (!fromCache || this.state.sessionId !== sessionId) {
      this.state = { ...this.state, sessionId, events: [], lastSeq: 0 };
    }
    for (const e of this.state.events) this.transcript.event(e);
    const running = new Set<string>();
    for (const e of this.state.events) {
      const child = (e.data as { childSessionId?: string } | undefined)?.childSessionId;
      if (e.type === "subagent.started" && child) running.add(child);
      if (e.type === "subagent.completed" && child) running.delete(child);
    }
    for (const child of running) this.followChild(child);
    const { session, context } = await this.backend.request("session/get", { sessionId });
    this.showSubagent(session);
    this.sessions.value = sessionId;
    this.showStatus(session.status);
    this.model = session.model;
    this.showUsage(context, session.usage);
    this.backend.showing?.(sessionId, context);
    this.save();
    this.stopFollowing = await this.backend.follow(sessionId, this.state.lastSeq, (e) => this.received(e));
  }

  private received(e: Event) {
    if (e.sessionId !== this.state.sessionId || e.seq <= this.state.lastSeq) return;
    this.transcript.event(e);
    const child = (e.data as { childSessionId?: string } | undefined)?.childSessionId;
    if (e.type === "subagent.started" && child) this.followChild(child);
    if (e.type === "subagent.completed" && child) this.unfollowChild(child);
    if (e.type === "session.status") this.showStatus((e.data as { status: SessionStatus }).status);
    if (e.type === "session.updated") {
      const { title, model } = e.data as { title?: string | null; model?: string | null };
      if (title) this.retitle(e.sessionId, title);
      if (model) this.model = model;
    }
    this.state.lastSeq = e.seq;
    if (!this.overflowed) this.state.events.push(e);
    if (this.state.events.length > CACHED_EVENTS) {
      this.overflowed = true;
      this.state.events = [];
    }
    this.save();
  }

  /** A running subagent asks its approvals of the parent's clients: they are shown in its `task` card. */
  private followChild(childSessionId: string) {
    if (this.children.has(childSessionId)) return;
    this.children.set(childSessionId, undefined);
    this.backend.follow(childSessionId, 0, (e) => this.transcript.childEvent(e)).then(
      (stop) => {
        if (this.children.has(childSessionId) && !this.children.get(childSessionId)) this.children.set(childSessionId, stop);
        else stop();
      },
      () => this.children.delete(childSessionId),
    );
  }

  private unfollowChild(childSessionId: string) {
    const stop = this.children.get(childSessionId);
    this.children.delete(childSessionId);
    stop?.();
  }

  private async submit(delivery: "queue" | "steer") {
    const text = this.prompt.value.trim();
    if (!text || this.readOnly) return;
    this.prompt.value = "";
    const sessionId = this.state.sessionId ?? (await this.createSession());
    const model = this.models.value || undefined;
    const agent = this.agents.value || undefined;
    await this.backend.request("session/prompt", { sessionId, input: [{ type: "text", text }], delivery, model, agent });
  }

  /** A subagent's session is followed read-only: no prompts; its parent is one click away. */
  private showSubagent(session: Session | undefined) {
    const parentId = session?.parentId ?? undefined;
    this.readOnly = Boolean(parentId);
    this.subagentBanner.hidden = !parentId;
    this.subagentBanner.replaceChildren();
    this.prompt.disabled = this.send.disabled = this.readOnly;
    this.models.disabled = this.agents.disabled = this.readOnly;
    // The list holds root sessions only: a followed child gets an entry of its own while it is shown.
    this.childOption?.remove();
    this.childOption = undefined;
    if (!session || !parentId) return;
    this.childOption = element("option", undefined, `↳ ${session.title}`);
    this.childOption.value = session.id;
    this.sessions.appendChild(this.childOption);
    const back = element("button", "back-to-parent", "Back to parent");
    back.onclick = () => void this.open(parentId, false);
    this.subagentBanner.append(element("span", undefined, `Subagent session (${session.agent}), read-only`), back);
  }

  private showStatus(status: SessionStatus | undefined) {
    this.status.textContent = status ?? "no session";
    this.status.dataset.status = status ?? "";
    const busy = !this.readOnly && (status === "running" || status === "waiting_approval" || status === "retrying");
    this.interrupt.disabled = !busy;
    this.steer.disabled = !busy;
    this.send.textContent = busy ? "Queue" : "Send";
  }

  /** How full the context is (from `session/get`, then each `session/usage`) and what the session cost. */
  private showUsage(context: ContextUsage, usage: Usage) {
    this.usage.textContent = usageLine(this.model, context, usage);
    this.usage.dataset.share = String(context.share);
  }

  private save() {
    // Events that do not fit are replayed on reload instead: the cursor goes with them.
    this.store.save(this.overflowed ? { ...this.state, events: [], lastSeq: 0 } : this.state);
  }
}
