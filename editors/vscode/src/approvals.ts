// Approvals outside the panel: when the chat panel does not show the approval's session (it is hidden, or shows
// another session that is not the approval's parent), an approval the engine asks this window for is shown as a
// notification with the same three answers. A panel that shows it (a subagent's approvals appear in its parent's
// `task` card) answers by itself (approval/respond), and the engine then withdraws this request; a dismissed notification leaves the approval pending, as it is durable.
import * as vscode from "vscode";
import type { Approval, ApprovalAnswer, CancellationToken } from "../../sdk-ts/src/index";

const answers: Record<string, ApprovalAnswer["decision"]> = {
  "Allow once": "once",
  "Always allow": "always",
  Reject: "reject",
};

/** Never settles by itself: only the engine withdrawing the request (another client answered) ends it. */
function leavePending(token: CancellationToken): Promise<ApprovalAnswer> {
  return new Promise((_, reject) => token.onCancellationRequested(() => reject(new Error("answered elsewhere"))));
}

export async function askApproval(
  approval: Approval,
  token: CancellationToken,
  panelShows: (sessionId: string) => Promise<boolean>,
): Promise<ApprovalAnswer> {
  if (await panelShows(approval.sessionId)) return leavePending(token);
  const title = approval.title || `${approval.tool} asks for approval`;
  const detail = approval.resources.length ? ` (${approval.resources.join(", ")})` : "";
  const choice = await vscode.window.showInformationMessage(`keel: ${title}${detail}`, ...Object.keys(answers));
  const decision = choice ? answers[choice] : undefined;
  return decision ? { decision } : leavePending(token);
}
