// Markdown and diffs as DOM. Model output is untrusted: raw HTML in markdown is shown as text, never parsed.
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import css from "highlight.js/lib/languages/css";
import diff from "highlight.js/lib/languages/diff";
import go from "highlight.js/lib/languages/go";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";
import { Marked } from "marked";

// The languages coding answers show most; the rest stay plain text rather than grow the bundle.
const languages = { bash, css, diff, go, javascript, json, python, rust, sql, typescript, xml, yaml };
for (const [name, language] of Object.entries(languages)) hljs.registerLanguage(name, language);
hljs.registerAliases(["sh", "shell", "zsh"], { languageName: "bash" });
hljs.registerAliases(["ts", "tsx"], { languageName: "typescript" });
hljs.registerAliases(["js", "jsx", "mjs"], { languageName: "javascript" });
hljs.registerAliases(["rs"], { languageName: "rust" });
hljs.registerAliases(["py"], { languageName: "python" });
hljs.registerAliases(["html", "svg"], { languageName: "xml" });
hljs.registerAliases(["yml"], { languageName: "yaml" });

const markdown = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    html: (token) => escapeHtml(token.text),
    code: (token) => {
      const language = token.lang?.split(/\s/)[0] ?? "";
      // highlight.js escapes what it returns; unknown languages are escaped here.
      const body = hljs.getLanguage(language)
        ? hljs.highlight(token.text, { language, ignoreIllegals: true }).value
        : escapeHtml(token.text);
      return `<pre><code class="hljs language-${escapeHtml(language)}">${body}</code></pre>`;
    },
  },
});

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

export function renderMarkdown(target: HTMLElement, text: string) {
  target.innerHTML = markdown.parse(text, { async: false }) as string;
}

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The change a file tool call asks for, when its input says: before and after text of one file. */
export interface FileChange {
  path: string;
  before: string;
  after: string;
}

export function fileChange(tool: string, input: unknown): FileChange | undefined {
  if (typeof input !== "object" || input === null) return undefined;
  const i = input as Record<string, unknown>;
  const path = typeof i.filePath === "string" ? i.filePath : typeof i.path === "string" ? i.path : undefined;
  if (!path) return undefined;
  if (tool === "write" && typeof i.content === "string") return { path, before: "", after: i.content };
  if (tool === "edit" && typeof i.oldString === "string" && typeof i.newString === "string") {
    return { path, before: i.oldString, after: i.newString };
  }
  return undefined;
}

/** A line diff (longest common subsequence), small inputs only: tool inputs, not whole files. */
export function diffLines(before: string, after: string): { kind: " " | "-" | "+"; text: string }[] {
  const a = before === "" ? [] : before.replace(/\n$/, "").split("\n");
  const b = after === "" ? [] : after.replace(/\n$/, "").split("\n");
  const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out: { kind: " " | "-" | "+"; text: string }[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      out.push({ kind: " ", text: a[i++] });
      j++;
    } else if (j < b.length && (i === a.length || lcs[i][j + 1] >= lcs[i + 1][j])) {
      out.push({ kind: "+", text: b[j++] });
    } else {
      out.push({ kind: "-", text: a[i++] });
    }
  }
  return out;
}

export function renderDiff(change: FileChange): HTMLElement {
  const pre = element("pre", "diff");
  for (const line of diffLines(change.before, change.after)) {
    const kind = line.kind === "+" ? "added" : line.kind === "-" ? "removed" : "context";
    pre.appendChild(element("div", `diff-line ${kind}`, `${line.kind} ${line.text}`));
  }
  return pre;
}

/** An `apply_patch` input (`*** Begin Patch` format) with its added, removed and header lines marked. */
export function renderPatch(patch: string): HTMLElement {
  const pre = element("pre", "diff");
  for (const line of patch.replace(/\n$/, "").split("\n")) {
    const kind = line.startsWith("*** ") || line.startsWith("@@")
      ? "header"
      : line.startsWith("+")
        ? "added"
        : line.startsWith("-")
          ? "removed"
          : "context";
    pre.appendChild(element("div", `diff-line ${kind}`, line));
  }
  return pre;
}
