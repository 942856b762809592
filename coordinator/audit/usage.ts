/**
 * GPU-hour accounting from the audit trail: the usage each site signed into its receipts
 * (common/usage.ts), summed per run and site for `fedhpc admin usage` and the Prometheus usage
 * series. Read from the journal only — the figures are the sites' own declarations, and a
 * coordinator restart loses none of them.
 */
import { Counter, type Registry } from 'prom-client';
import type { RoundUsage } from '../../common/usage.js';
import type { JournalRecord } from '../state/journal.js';
import { isRecordOf } from '../state/records.js';

export interface UsageFilter {
  /** One site; undefined: every site. */
  readonly site?: string | undefined;
  /** Rounds committed at or after (ms since epoch); undefined: open. */
  readonly fromMs?: number | undefined;
  /** Rounds committed before (ms since epoch); undefined: open. */
  readonly toMs?: number | undefined;
}

export interface UsageRound {
  readonly round: number;
  readonly committedMs: number;
  /** Undefined: the site's receipt of the round has not come (yet). */
  readonly usage?: RoundUsage | undefined;
}

/** One site's usage in one run. Unknown rounds and rounds without a receipt are counted, not summed. */
export interface UsageRow {
  readonly runId: string;
  readonly site: string;
  readonly rounds: number;
  readonly roundsWithoutReceipt: number;
  readonly roundsUnknown: number;
  readonly allocatedGpuMs: number;
  readonly trainingGpuMs: number;
  /** Sources of the known rounds, sorted. */
  readonly sources: readonly string[];
  readonly perRound: readonly UsageRound[];
}

/**
 * The usage rows of `records`, sorted by run (in journal order) then site. A round counts when it
 * committed in the filter's window with the site among its participants; its usage is the site's
 * receipt of it (a receipt journaled before protocol version 6 carries none: without receipt).
 */
export function usageRows(records: readonly JournalRecord[], filter: UsageFilter = {}): UsageRow[] {
  const receipts = new Map<string, RoundUsage | undefined>();
  for (const r of records) {
    const b = r.body;
    if (isRecordOf(b, 'receipt')) receipts.set(`${b.runId}\n${b.round}\n${b.site}`, b.usage);
  }
  const rows = new Map<string, { runId: string; site: string; perRound: UsageRound[] }>();
  for (const r of records) {
    const b = r.body;
    if (!isRecordOf(b, 'round-committed')) continue;
    if (filter.fromMs !== undefined && r.ts < filter.fromMs) continue;
    if (filter.toMs !== undefined && r.ts >= filter.toMs) continue;
    for (const p of b.participants) {
      if (filter.site !== undefined && p.site !== filter.site) continue;
      const key = `${b.runId}\n${p.site}`;
      const row = rows.get(key) ?? { runId: b.runId, site: p.site, perRound: [] };
      rows.set(key, row);
      row.perRound.push({ round: b.round, committedMs: r.ts, usage: receipts.get(`${b.runId}\n${b.round}\n${p.site}`) });
    }
  }
  const runOrder = [...new Set([...rows.values()].map((r) => r.runId))];
  return [...rows.values()]
    .sort((a, b) => runOrder.indexOf(a.runId) - runOrder.indexOf(b.runId) || (a.site < b.site ? -1 : a.site > b.site ? 1 : 0))
    .map((row) => summarise(row.runId, row.site, row.perRound));
}

function summarise(runId: string, site: string, perRound: readonly UsageRound[]): UsageRow {
  let allocatedGpuMs = 0;
  let trainingGpuMs = 0;
  let roundsUnknown = 0;
  let roundsWithoutReceipt = 0;
  const sources = new Set<string>();
  for (const { usage } of perRound) {
    if (usage === undefined) roundsWithoutReceipt += 1;
    else if (usage.source === 'unknown') roundsUnknown += 1;
    else {
      allocatedGpuMs += usage.allocatedGpuMs;
      trainingGpuMs += usage.trainingGpuMs;
      sources.add(usage.source);
    }
  }
  return { runId, site, rounds: perRound.length, roundsWithoutReceipt, roundsUnknown, allocatedGpuMs, trainingGpuMs, sources: [...sources].sort(), perRound };
}

/**
 * `fedhpc_site_gpu_seconds_total{site,run,kind}` (kind `allocated` or `training`; waiting is their
 * difference) and `fedhpc_site_usage_unknown_rounds_total{site,run}`, read from the journal at
 * each scrape: they only grow, and a restarted coordinator reports the same totals.
 */
export function registerUsageMetrics(registry: Registry, records: () => readonly JournalRecord[]): void {
  const registers = [registry];
  let cached: { length: number; rows: UsageRow[] } = { length: -1, rows: [] };
  const rows = (): UsageRow[] => {
    const all = records();
    if (all.length !== cached.length) cached = { length: all.length, rows: usageRows(all) };
    return cached.rows;
  };
  new Counter({
    name: 'fedhpc_site_gpu_seconds_total',
    help: 'GPU-seconds each site declared in its signed receipts, per run: allocated, and the part spent training',
    labelNames: ['site', 'run', 'kind'] as const,
    registers,
    collect() {
      this.reset();
      for (const r of rows()) {
        this.inc({ site: r.site, run: r.runId, kind: 'allocated' }, r.allocatedGpuMs / 1000);
        this.inc({ site: r.site, run: r.runId, kind: 'training' }, r.trainingGpuMs / 1000);
      }
    },
  });
  new Counter({
    name: 'fedhpc_site_usage_unknown_rounds_total',
    help: 'Rounds whose usage a site declared unknown (no scheduler accounting, for one), per run',
    labelNames: ['site', 'run'] as const,
    registers,
    collect() {
      this.reset();
      for (const r of rows()) this.inc({ site: r.site, run: r.runId }, r.roundsUnknown);
    },
  });
}
