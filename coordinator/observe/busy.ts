/**
 * A site's busy fraction in a round (issue 16): the time between the first and last training step
 * of its fresh work, from the trainer's progress.jsonl as the upload header reports it, over the
 * round's wall time (attempt opened → committed). Only the span's length is read, so the site's
 * clock need not agree with the coordinator's; it is display only, clamped to [0, 1], and undefined
 * when the site reported no span (an older agent, a trainer without timestamps).
 */
export function busyFraction(span: { readonly trainStartedMs?: number | undefined; readonly trainFinishedMs?: number | undefined }, roundStartedMs: number, roundFinishedMs: number): number | undefined {
  const { trainStartedMs: a = 0, trainFinishedMs: b = 0 } = span;
  const wall = roundFinishedMs - roundStartedMs;
  if (a <= 0 || b < a || !(wall > 0)) return undefined;
  return Math.min(1, (b - a) / wall);
}
