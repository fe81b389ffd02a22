// How full a session's context is and what it cost, as the panel and the status bar show it:
// "31.4k of 200k (16%) · $0.0123".
import type { ContextUsage, Usage } from "../../sdk-ts/src/generated/protocol";

/** 950 → "950", 31400 → "31.4k", 200000 → "200k", 1000000 → "1M". */
export function tokens(n: number): string {
  const short = (v: number, unit: string) => `${Number.isInteger(v) || v >= 100 ? Math.round(v) : v.toFixed(1)}${unit}`;
  if (n >= 1_000_000) return short(n / 1_000_000, "M");
  if (n >= 1000) return short(n / 1000, "k");
  return String(n);
}

/** The share of the window as a percentage: "16%", "0.4%", "<0.1%". */
export function percent(share: number): string {
  const p = share * 100;
  if (p > 0 && p < 0.1) return "<0.1%";
  return p < 10 && !Number.isInteger(Math.round(p * 10) / 10) ? `${p.toFixed(1)}%` : `${Math.round(p)}%`;
}

/** "31.4k of 200k (16%)", or "31.4k tokens" when the model's window is not known. */
export function contextLine(context: ContextUsage): string {
  if (!context.window) return `${tokens(context.tokens)} tokens`;
  return `${tokens(context.tokens)} of ${tokens(context.window)} (${percent(context.share)})`;
}

/** Dollars: four decimals below one cent, two above. */
export function dollars(cost: number): string {
  return `$${cost > 0 && cost < 0.01 ? cost.toFixed(4) : cost.toFixed(2)}`;
}

export function usageLine(model: string, context: ContextUsage, usage: Usage): string {
  const totals = `${tokens(usage.inputTokens)} in · ${tokens(usage.outputTokens)} out`;
  return `${model || "default model"} · ${contextLine(context)} · ${totals} · ${dollars(usage.costUsd)}`;
}
