// The transcript of one session, built from its durable events (each rendered once, keyed by seq) and the
// streamed deltas that precede them. A delta only ever fills a provisional block that the `*.completed` event
// then replaces, so missing deltas loses nothing.
import type { DeltaParams, Event } from "../../sdk-ts/src/generated/protocol";
import { element, fileChange, renderDiff, renderMarkdown, renderPatch } from "./render";

export interface TranscriptActions {
  answerApproval(approvalId: string, decision: "once" | "always" | "reject"): void;
  removeQueued(inputId: string): void;
  openDiff?(path: string, before: string, after: string): void;
  /** Shows a subagent's child session (from its `task` card). */
  openSession(sessionId: string): void;
}

type Data = Record<string, unknown>;
const str = (v: unknown) => (typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v));

export class Transcript {
  private readonly parts = new Map<string, { node: HTMLElement; text: string }>();
  private readonly tools = new Map<string, HTMLElement>();
  private readonly approvals = new Map<string, HTMLElement>();
  /** Prompts still waiting in the queue, by input id, until promoted or removed. */
  private readonly queued = new Map<string, HTMLElement>();

  constructor(
    readonly root: HTMLElement,
    private readonly actions: TranscriptActions,
  ) {}

  clear() {
    this.root.replaceChildren();
    this.parts.clear();
    this.tools.clear();
    this.approvals.clear();
    this.queued.clear();
  }

  delta(d: DeltaParams) {
    if (d.kind !== "text" && d.kind !== "reasoning") return;
    const part = this.part(d.partId, d.kind);
    part.text += d.delta;
    this.fill(part.node, d.kind, part.text, true);
  }

  event(e: Event) {
    const data = (e.data ?? {}) as Data;
    switch (e.type) {
      case "input.admitted": {
        const text = ((data.input as Data[]) ?? []).map((p) => (p.type === "text" ? str(p.text) : `[${str(p.type)}: ${str(p.path)}]`));
        const node = this.append(e, "message user");
        node.textContent = text.join("\n");
        if (data.disposition === "queued" || data.disposition === "steered") node.dataset.delivery = str(data.disposition);
        if (data.disposition === "queued") {
          const inputId = str(data.inputId);
          const remove = element("button", "queue-remove", "Remove from queue");
          remove.onclick = () => {
            remove.disabled = true;
            this.actions.removeQueued(inputId);
          };
          node.appendChild(remove);
          this.queued.set(inputId, node);
        }
        break;
      }
      case "input.promoted":
      case "input.removed": {
        const ids = e.type === "input.promoted" ? ((data.inputIds as string[] | undefined) ?? []) : [str(data.inputId)];
        for (const id of ids) {
          const node = this.queued.get(id);
          this.queued.delete(id);
          node?.querySelector(".queue-remove")?.remove();
          if (node && e.type === "input.removed") node.classList.add("removed");
          else if (node) delete node.dataset.delivery;
        }
        break;
      }
      case "queue.paused":
        this.append(e, "notice").textContent = "The queue is paused until the next prompt.";
        break;
      case "text.completed":
      case "reasoning.completed": {
        const kind = e.type === "text.completed" ? "text" : "reasoning";
        const part = this.part(str(data.partId), kind);
        part.text = str(data.text);
        part.node.dataset.seq = String(e.seq);
        this.fill(part.node, kind, part.text, false);
        break;
      }
      case "tool.called":
        this.toolCall(e, data);
        break;
      case "tool.started":
        this.toolStatus(str(data.callId), "running");
        break;
      case "tool.completed":
      case "tool.failed": {
        const card = this.tools.get(str(data.callId));
        this.toolStatus(str(data.callId), e.type === "tool.completed" ? "done" : "failed");
        if (card) {
          const details = element("details", "tool-output");
          details.appendChild(element("summary", undefined, e.type === "tool.completed" ? "Output" : "Error"));
          details.appendChild(element("pre", undefined, str(e.type === "tool.completed" ? data.output : data.error)));
          card.appendChild(details);
        }
        break;
      }
      case "subagent.started":
        this.subagentStarted(e, data);
        break;
      case "subagent.completed":
        this.subagentCompleted(e, data);
        break;
      case "approval.requested":
        this.approvalCard(e, data);
        break;
      case "approval.resolved": {
        const card = this.approvals.get(str(data.approvalId));
        if (card) {
          card.classList.add("resolved");
          card.querySelector(".approval-buttons")?.remove();
          card.appendChild(element("div", "approval-decision", `${str(data.decision)} (${str(data.by)})`));
        }
        break;
      }
      case "turn.failed":
        this.append(e, "notice error").textContent = `The model request failed: ${str((data.error as Data)?.message ?? data.error)}`;
        break;
      case "activity.closed":
        if (data.reason !== "completed") this.append(e, "notice").textContent = `Stopped: ${str(data.reason)} ${str(data.error)}`;
        break;
      case "compaction.completed":
        this.append(e, "notice").textContent = "The context was compacted.";
        break;
    }
  }

  private append(e: Event, className: string): HTMLElement {
    const node = element("div", className);
    node.dataset.seq = String(e.seq);
    this.root.appendChild(node);
    node.scrollIntoView?.({ block: "end" });
    return node;
  }

  private part(partId: string, kind: "text" | "reasoning") {
    let part = this.parts.get(partId);
    if (!part) {
      const node = kind === "reasoning" ? element("details", "message reasoning") : element("div", "message assistant");
      this.root.appendChild(node);
      part = { node, text: "" };
      this.parts.set(partId, part);
    }
    return part;
  }

  private fill(node: HTMLElement, kind: "text" | "reasoning", text: string, streaming: boolean) {
    node.classList.toggle("streaming", streaming);
    if (kind === "reasoning") {
      node.replaceChildren(element("summary", undefined, "Reasoning"), element("div", "reasoning-text", text));
    } else {
      renderMarkdown(node, text);
    }
  }

  private toolCall(e: Event, data: Data) {
    const card = this.append(e, "tool");
    const tool = str(data.tool);
    card.dataset.callId = str(data.callId);
    const head = element("div", "tool-head");
    head.appendChild(element("span", "tool-name", tool));
    head.appendChild(element("span", "tool-status", "called"));
    card.appendChild(head);
    const change = fileChange(tool, data.input);
    if (change) {
      card.appendChild(element("div", "tool-path", change.path));
      card.appendChild(renderDiff(change));
      const open = this.actions.openDiff;
      if (open) {
        const button = element("button", "open-diff", "Open diff");
        button.onclick = () => open(change.path, change.before, change.after);
        card.appendChild(button);
      }
    } else if (tool === "apply_patch" && typeof (data.input as Data)?.patch === "string") {
      card.appendChild(renderPatch((data.input as Data).patch as string));
    } else {
      card.appendChild(element("pre", "tool-input", JSON.stringify(data.input, null, 2)));
    }
    this.tools.set(str(data.callId), card);
  }

  /** The child session a `task` call started, inside the call's card: agent, description, id, and a way in. */
  private subagentStarted(e: Event, data: Data) {
    const card = this.tools.get(str(data.callId)) ?? this.append(e, "tool");
    const childSessionId = str(data.childSessionId);
    const box = element("div", "subagent");
    box.dataset.seq = String(e.seq);
    box.dataset.childSessionId = childSessionId;
    const head = element("div", "subagent-head");
    head.append(element("span", "subagent-agent", str(data.agent)), element("span", "subagent-description", str(data.description)));
    const open = element("button", "open-subagent", "Open session");
    open.title = "Follow the subagent's session (read-only)";
    open.onclick = () => this.actions.openSession(childSessionId);
    box.append(head, element("div", "subagent-id", childSessionId), open);
    // Before the call's output, which arrives when the child is done.
    card.insertBefore(box, card.querySelector(".tool-output"));
  }

  private subagentCompleted(e: Event, data: Data) {
    const box = this.root.querySelector<HTMLElement>(`.subagent[data-child-session-id="${CSS.escape(str(data.childSessionId))}"]`);
    const target = box ?? this.append(e, "subagent");
    const result = element("div", "subagent-result");
    result.dataset.seq = String(e.seq);
    result.dataset.reason = str(data.reason);
    result.appendChild(element("div", "subagent-reason", `Subagent ${str(data.reason)}`));
    if (typeof data.answer === "string" && data.answer) {
      const answer = element("div", "subagent-answer");
      renderMarkdown(answer, data.answer);
      result.appendChild(answer);
    }
    target.appendChild(result);
  }

  private toolStatus(callId: string, status: string) {
    const card = this.tools.get(callId);
    if (!card) return;
    card.dataset.status = status;
    const label = card.querySelector(".tool-status");
    if (label) label.textContent = status;
  }

  /**
   * An event of a running subagent's session that the parent's reader must see: its approvals, shown in the `task`
   * card that started it (the child's seqs are its own, so they are not marked as this transcript's).
   */
  childEvent(e: Event) {
    const data = (e.data ?? {}) as Data;
    if (e.type === "approval.requested" && !this.approvals.has(str(data.approvalId))) {
      const box = this.root.querySelector<HTMLElement>(`.subagent[data-child-session-id="${CSS.escape(e.sessionId)}"]`);
      if (box) this.approvalCard(e, data, box);
    } else if (e.type === "approval.resolved") {
      this.event({ ...e, seq: -1 });
    }
  }

  private approvalCard(e: Event, data: Data, within?: HTMLElement) {
    let card: HTMLElement;
    if (within) {
      card = element("div", "approval");
      card.dataset.childSeq = String(e.seq);
      within.appendChild(card);
      card.scrollIntoView?.({ block: "end" });
    } else {
      card = this.append(e, "approval");
    }
    const approvalId = str(data.approvalId);
    card.dataset.approvalId = approvalId;
    card.appendChild(element("div", "approval-title", str(data.title) || `${str(data.tool)} asks for approval`));
    const resources = (data.resources as string[] | undefined) ?? [];
    if (resources.length) card.appendChild(element("div", "approval-resources", resources.join(", ")));
    const buttons = element("div", "approval-buttons");
    for (const decision of ["once", "always", "reject"] as const) {
      const label = decision === "once" ? "Allow once" : decision === "always" ? "Always allow" : "Reject";
      const button = element("button", `approve-${decision}`, label);
      button.onclick = () => {
        buttons.querySelectorAll("button").forEach((b) => (b.disabled = true));
        this.actions.answerApproval(approvalId, decision);
      };
      buttons.appendChild(button);
    }
    card.appendChild(buttons);
    this.approvals.set(approvalId, card);
  }
}
