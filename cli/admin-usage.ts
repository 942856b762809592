/**
 * `fedhpc admin usage`: the GPU-hours each site declared in its signed receipts, summed per run and
 * site — what a centre reports to its allocation committee. `--site`, `--from`, `--to` filter;
 * `--json` gives every round's usage, `--csv` one line per run and site.
 */
import { printable, safeJson } from '../common/text.js';
import type { AdminClient } from '../coordinator/index.js';
import type { UsageResponse__Output, UsageRow__Output } from '../proto/index.js';
import { formatTable } from './table.js';
import { UsageError } from './usage-error.js';

export interface UsageArgs {
  readonly site?: string | undefined;
  /** ISO 8601 date or time (`2026-12-01`, `2026-12-01T10:00Z`): rounds committed at or after it. */
  readonly from?: string | undefined;
  /** Rounds committed before it. */
  readonly to?: string | undefined;
  readonly json: boolean;
  readonly csv: boolean;
}

const HOUR_MS = 3_600_000;

/** A row's GPU-hours: allocated, training, and waiting (the rest of the allocation). */
function rowHours(r: UsageRow__Output): { allocated: number; training: number; waiting: number } {
  const allocated = Number(r.allocatedGpuMs) / HOUR_MS;
  const training = Number(r.trainingGpuMs) / HOUR_MS;
  return { allocated, training, waiting: allocated - training };
}

/** `--from`/`--to` as ms since the epoch; a value Date cannot read is a usage error. */
export function parseWhen(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = /^\d{4}-\d{2}-\d{2}(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$/.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms) || ms <= 0) throw new UsageError(`--${option} must be an ISO 8601 date or time (2026-12-01, 2026-12-01T10:00Z), got ${JSON.stringify(value)}`);
  return ms;
}

/** One row as JSON readers want it: GPU-hours as numbers, waiting included, each round's declaration. */
function jsonRow(r: UsageRow__Output): Record<string, unknown> {
  const { allocated, training, waiting } = rowHours(r);
  return {
    run: r.runId,
    site: r.siteId,
    rounds: r.rounds,
    roundsUnknown: r.roundsUnknown,
    roundsWithoutReceipt: r.roundsWithoutReceipt,
    allocatedGpuHours: allocated,
    trainingGpuHours: training,
    waitingGpuHours: waiting,
    sources: r.sources === '' ? [] : r.sources.split(','),
    perRound: r.perRound.map((p) => ({
      round: Number(p.round),
      committedMs: Number(p.committedMs),
      usage: p.usage
        ? { source: p.usage.source, gpus: p.usage.gpus, wallMs: Number(p.usage.wallMs), allocatedGpuMs: Number(p.usage.allocatedGpuMs), trainingGpuMs: Number(p.usage.trainingGpuMs), jobs: p.usage.jobs, reason: p.usage.reason }
        : null,
    })),
  };
}

/** A CSV field (RFC 4180): quoted when it holds a comma, quote or line break. */
const csvField = (v: string | number): string => {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

export const USAGE_CSV_HEADER = ['run', 'site', 'rounds', 'rounds_unknown', 'rounds_without_receipt', 'allocated_gpu_hours', 'training_gpu_hours', 'waiting_gpu_hours', 'sources'] as const;

function csv(rows: readonly UsageRow__Output[]): string {
  const lines = [USAGE_CSV_HEADER.join(',')];
  for (const r of rows) {
    const { allocated, training, waiting } = rowHours(r);
    lines.push([r.runId, r.siteId, r.rounds, r.roundsUnknown, r.roundsWithoutReceipt, allocated.toFixed(6), training.toFixed(6), waiting.toFixed(6), r.sources].map(csvField).join(','));
  }
  return lines.join('\n');
}

function table(rows: readonly UsageRow__Output[]): string {
  if (rows.length === 0) return 'no committed rounds in this window';
  const gh = (h: number): string => h.toFixed(h < 10 ? 3 : 1);
  return formatTable(
    ['run', 'site', 'rounds', 'GPU-h allocated', 'GPU-h training', 'GPU-h waiting', 'training', 'unknown', 'no receipt', 'source'],
    rows.map((r) => {
      const { allocated, training, waiting } = rowHours(r);
      return [
        r.runId,
        r.siteId,
        String(r.rounds),
        gh(allocated),
        gh(training),
        gh(waiting),
        allocated > 0 ? `${((training / allocated) * 100).toFixed(0)}%` : '-',
        r.roundsUnknown > 0 ? `${r.roundsUnknown} (${unknownReason(r)})` : '0',
        String(r.roundsWithoutReceipt),
        r.sources || '-',
      ];
    }),
  );
}

/** The reason of the latest unknown round: what an operator fixes first. */
function unknownReason(r: UsageRow__Output): string {
  const last = [...r.perRound].reverse().find((p) => p.usage?.source === 'unknown');
  const reason = last?.usage?.reason ?? '';
  return reason.length > 60 ? `${reason.slice(0, 57)}...` : reason;
}

/** Asks the coordinator and prints; `--csv` and `--json` exclude each other. */
export async function usageCommand(client: AdminClient, a: UsageArgs, out: (s: string) => void): Promise<number> {
  if (a.json && a.csv) throw new UsageError('admin usage takes --json or --csv, not both');
  const fromMs = parseWhen(a.from, 'from');
  const toMs = parseWhen(a.to, 'to');
  if (fromMs !== undefined && toMs !== undefined && toMs <= fromMs) throw new UsageError(`--to (${a.to}) must be after --from (${a.from})`);
  const r: UsageResponse__Output = await client.usage({ ...(a.site ? { siteId: a.site } : {}), ...(fromMs ? { fromMs } : {}), ...(toMs ? { toMs } : {}) });
  // What the coordinator sends is data: the table is made printable, JSON escapes every control.
  if (a.json) out(safeJson({ from: fromMs ?? null, to: toMs ?? null, rows: r.rows.map(jsonRow) }));
  else out(a.csv ? csv(r.rows) : printable(table(r.rows), { keepNewlines: true }));
  return 0;
}
