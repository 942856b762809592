/**
 * `fedhpc admin …`: wiring from arguments to the admin client and output. Every command prints a
 * human table by default and JSON with `--json`.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { z } from 'zod';
import { loadConfigFile, parseConfig } from '../common/config-file.js';
import { coordinatorAddressSchema, exactlyOneCoordinator } from '../common/coordinator-verdict.js';
import { AdminClient, runSchema } from '../coordinator/index.js';
import { approveCommand } from './admin-enrol.js';
import { UsageError } from './usage-error.js';
import { usageCommand } from './admin-usage.js';
import { watchCommand } from './admin-watch.js';
import { formatBytes, formatDuration, formatTable, formatTime } from './table.js';
import { printable, safeJson } from '../common/text.js';
import type { SiteInfo__Output, StatusResponse__Output } from '../proto/index.js';

/** A coordinator's address: `host:port` or `[v6]:port` (the site config's rule, common/coordinator-verdict.ts). */

export const adminConfigSchema = z
  .object({
    /** The coordinator's `host:port` (this, or `coordinators`). */
    coordinator: coordinatorAddressSchema.optional(),
    /**
     * Several coordinator addresses, tried in order; a standby's `NOT_LEADER` names the leader to
     * follow (docs/protocol.md, "Standby coordinators and NOT_LEADER"; issue 19). This, or `coordinator`.
     */
    coordinators: z.array(coordinatorAddressSchema).min(1).max(16).optional(),
    /** TLS server name to verify when a coordinator address is one the certificate does not name (every address). */
    serverName: z.string().optional(),
    tls: z.object({ ca: z.string(), cert: z.string(), key: z.string() }).strict(),
    /** The coordinator's dashboard, `http(s)://host:port`: `admin dashboard-token` prints a sign-in link to it. */
    dashboard: z.string().optional(),
  })
  .strict()
  .superRefine(exactlyOneCoordinator);

/** A parsed admin config file. */
export type AdminConfig = z.output<typeof adminConfigSchema>;

export const ADMIN_COMMANDS = ['status', 'sites', 'rounds', 'round', 'start', 'pause', 'resume', 'abort', 'approve', 'revoke', 'watch', 'logs', 'usage'] as const;
export type AdminCommand = (typeof ADMIN_COMMANDS)[number];

/** Arguments of one admin command, as parsed by cli/main.ts. */
export interface AdminArgs {
  readonly command: AdminCommand;
  /** The positional after the command: round number or site id. */
  readonly target: string | undefined;
  readonly config: string;
  readonly json: boolean;
  readonly run?: string | undefined;
  readonly csr?: string | undefined;
  readonly ca?: string | undefined;
  readonly out?: string | undefined;
  readonly reason?: string | undefined;
  readonly limit?: number | undefined;
  readonly language?: string | undefined;
  readonly validityDays?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  /** `admin usage`: a site, a window, CSV instead of a table. */
  readonly site?: string | undefined;
  readonly from?: string | undefined;
  readonly to?: string | undefined;
  readonly csv?: boolean | undefined;
}


/** Loads an admin config file (relative paths resolve against its folder). */
export function loadAdminConfig(file: string): AdminConfig {
  return loadConfigFile(file, adminConfigSchema, (c, rel) => ({ ...c, tls: { ca: rel(c.tls.ca), cert: rel(c.tls.cert), key: rel(c.tls.key) } }));
}

const need = (value: string | undefined, what: string): string => {
  if (!value) throw new UsageError(what);
  return value;
};

/** Runs one admin command and writes its output; returns the exit code. */
export async function runAdmin(a: AdminArgs, out: (s: string) => void): Promise<number> {
  const cfg = loadAdminConfig(a.config);
  const client = new AdminClient(cfg);
  // What the coordinator sends is data: the human form is made printable (the lines the CLI lays
  // out stay lines), and the JSON form is exact JSON with every control escaped.
  const print = (value: unknown, human: () => string): number => (out(a.json ? safeJson(value) : printable(human(), { keepNewlines: true })), 0);
  try {
    switch (a.command) {
      case 'status': {
        const s = await client.status();
        return print(s, () =>
          formatTable(['field', 'value'], [
            ['federation', s.federation],
            ['run', s.runId ? `${s.runId} (${s.runState})` : `none (${s.runState})`],
            ['round', s.phase ? `${s.round}.${s.attempt} ${s.phase}` : '-'],
            ['deadline', Number(s.phaseDeadlineMs) > 0 ? formatTime(Number(s.phaseDeadlineMs)) : '-'],
            ['committed', `${s.roundsCommitted} / ${s.roundsTotal}`],
            ['last round up', Number(s.roundsCommitted) > 0 ? formatBytes(Number(s.lastRoundBytesUp)) : '-'],
            ['applied staleness', appliedStalenessCell(s)],
            ['global model', s.globalModelSha256 || '-'],
            ['sites', `${s.sitesConnected} connected / ${s.sitesKnown} known / ${s.sitesMembers} members${s.sitesRevoked > 0 ? ` / ${s.sitesRevoked} revoked` : ''}`],
            ['refused', refusalsCell(s)],
            ['state dir', formatBytes(Number(s.stateDirBytes))],
            ['upload budget', budgetCell(s)],
            ['uptime', `${(Number(s.uptimeMs) / 1000).toFixed(0)} s`],
            ...haRows(s),
            ...shardRows(s),
          ]),
        );
      }
      case 'sites': {
        const { sites } = await client.sites();
        return print(sites, () =>
          formatTable(
            ['site', 'connected', 'activity', 'progress', 'transfer', 'up', 'down', 'rounds', 'last round', 'busy', 'agent'],
            sites.map((s) => [
              s.revoked ? `${s.siteId} (revoked)` : s.siteId,
              s.connected ? 'yes' : 'no',
              s.activity,
              s.progress >= 0 ? `${(s.progress * 100).toFixed(0)}%` : '-',
              transferCell(s),
              formatBytes(Number(s.bytesUp)),
              formatBytes(Number(s.bytesDown)),
              String(s.roundsContributed),
              lastRoundCell(s),
              s.busyFraction >= 0 ? `${(s.busyFraction * 100).toFixed(0)}%` : '-',
              s.agentVersion,
            ]),
          ),
        );
      }
      case 'rounds': {
        const r = await client.rounds();
        return print(r, () =>
          formatTable(
            ['round', 'outcome', 'participants', 'dropped', 'eval loss', '± quant', 'up', 'model'],
            r.rounds.map((x) => [
              `${x.round}.${x.attempt}`,
              x.outcome,
              x.participants.join(',') || '-',
              x.dropped.join(',') || (x.reason ? x.reason : '-'),
              x.hasEval ? x.evalLoss.toFixed(4) : '-',
              x.quantizationBound > 0 ? x.quantizationBound.toExponential(2) : '-',
              formatBytes(Number(x.bytesUp)),
              x.modelSha256.slice(0, 12) || '-',
            ]),
          ),
        );
      }
      case 'round':
        return await roundCommand(client, a, print);
      case 'start': {
        const file = resolve(need(a.run, 'admin start needs --run FILE (a run file: JSON with the run fields of the coordinator config)'));
        const text = await readFile(file, 'utf8').catch((err: unknown) => {
          throw new UsageError(`cannot read run file ${file}: ${(err as Error).message}`);
        });
        // Checked here first so a typo is reported before anything is sent, naming field and file.
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch (err) {
          throw new UsageError(`run file ${file} is not valid JSON: ${(err as Error).message}`);
        }
        parseConfig(file, json, runSchema);
        const r = await client.startRun(text, file);
        return print(r, () => `${r.message}; run ${r.runId} is ${r.runState}`);
      }
      case 'pause':
      case 'resume':
      case 'abort': {
        const r = a.command === 'pause' ? await client.pause(a.reason) : a.command === 'resume' ? await client.resume() : await client.abort(a.reason);
        return print(r, () => formatTable(['run', 'state', 'note'], [[r.runId, r.runState, r.message]]));
      }
      case 'approve':
        return await approveCommand(client, cfg, a, print);
      case 'revoke': {
        const site = need(a.target, 'admin revoke needs a site id: fedhpc admin revoke SITE --config ADMIN.json');
        const r = await client.revokeSite(site, a.reason ?? '');
        return print(r, () =>
          formatTable(['site', 'revoked certificates', 'dropped from round'], [
            [r.siteId, r.certificateFingerprints.map((f) => f.slice(0, 23)).join(' ') || '(none seen; the site id is refused)', Number(r.droppedFromRound) > 0 ? String(r.droppedFromRound) : '-'],
          ]),
        );
      }
      case 'watch':
        return await watchCommand(client, a.json, out, a.signal);
      case 'usage':
        return await usageCommand(client, { site: a.site, from: a.from, to: a.to, json: a.json, csv: a.csv === true }, out);
      case 'logs': {
        const site = need(a.target, 'admin logs needs a site id: fedhpc admin logs SITE --config ADMIN.json');
        const r = await client.siteLogs(site, a.limit ?? 50);
        return print(r, () => formatTable(['time', 'kind', 'message'], r.lines.map((l) => [formatTime(Number(l.tsMs)), l.kind, l.message])));
      }
    }
  } finally {
    client.close();
  }
}

function transferCell(s: { transferDirection: string; transferBytes: string; transferTotal: string; transferRateBytesPerS: number; transferEtaS: number }): string {
  if (!s.transferDirection) return '-';
  const total = Number(s.transferTotal);
  const pct = total > 0 ? ` ${((Number(s.transferBytes) / total) * 100).toFixed(0)}%` : '';
  const eta = s.transferEtaS > 0 ? ` eta ${formatDuration(s.transferEtaS * 1000)}` : '';
  return `${s.transferDirection}${pct} ${formatBytes(s.transferRateBytesPerS)}/s${eta}`;
}

/** The site's last committed round: "r3: 51200 tok, 25 steps, stale 1, +1 folded, applied 12 steps late". */
function lastRoundCell(s: SiteInfo__Output): string {
  if (Number(s.lastRound) === 0) return '-';
  const stale = s.lastStaleness > 0 ? `, stale ${s.lastStaleness}` : '';
  const folded = s.lastFoldedParts > 0 ? `, +${s.lastFoldedParts} folded` : '';
  const applied = s.lastAppliedStaleness > 0 ? `, applied ${s.lastAppliedStaleness} steps late` : '';
  return `r${s.lastRound}: ${s.lastTokens} tok, ${s.lastSteps} steps${stale}${folded}${applied}`;
}

/** Overlapped rounds: the largest applied staleness of the run's committed rounds, and its bound: "12 steps (limit 64)". */
function appliedStalenessCell(s: StatusResponse__Output): string {
  if (Number(s.roundsCommitted) === 0 && s.appliedStalenessLimit === 0) return '-';
  const limit = s.appliedStalenessLimit > 0 ? ` (limit ${s.appliedStalenessLimit})` : '';
  return `${s.maxAppliedStalenessSteps} steps max${limit}`;
}

async function roundCommand(client: AdminClient, a: AdminArgs, print: (v: unknown, human: () => string) => number): Promise<number> {
  const n = Number(need(a.target, 'admin round needs a round number: fedhpc admin round N --config ADMIN.json'));
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`round must be a positive integer, got ${JSON.stringify(a.target)}`);
  const d = await client.round(n);
  return print(d, () => {
    const parts: string[] = [`run ${d.runId}, round ${d.round}${d.hasEval ? `, eval loss ${d.evalLoss.toFixed(4)}` : ''}`];
    for (const at of d.attempts) {
      parts.push(
        '',
        formatTable(['attempt', 'outcome', 'dropped', 'up', 'down', 'parent', 'model'], [
          [String(at.attempt), at.outcome + (at.reason ? ` (${at.reason})` : ''), at.dropped.join(',') || '-', formatBytes(Number(at.bytesUp)), formatBytes(Number(at.bytesDown)), at.parentSha256.slice(0, 12) || '-', at.modelSha256.slice(0, 12) || '-'],
        ]),
      );
      if (at.phases.length > 0) {
        parts.push('', formatTable(['phase', 'started', 'duration'], at.phases.map((p) => [p.phase, formatTime(Number(p.startedMs)), Number(p.durationMs) > 0 ? formatDuration(Number(p.durationMs)) : 'open'])));
      }
      if (at.participants.length > 0) {
        parts.push(
          '',
          formatTable(['site', 'weight', 'samples', 'tokens', 'steps', 'stale', 'applied', 'folded', 'busy', 'train loss', 'delta', 'data manifest'], at.participants.map((p) => [
            p.siteId,
            p.weight.toFixed(3),
            String(p.samples),
            String(p.tokens),
            String(p.steps),
            String(p.staleness),
            String(p.appliedStaleness),
            p.foldedParts > 0 ? `${p.foldedParts} (${p.foldedCount.toFixed(0)})` : '-',
            p.busyFraction >= 0 ? `${(p.busyFraction * 100).toFixed(0)}%` : '-',
            p.trainLoss >= 0 ? p.trainLoss.toFixed(4) : '-',
            p.deltaSha256.slice(0, 12),
            p.dataManifestSha256.slice(0, 12) || '-',
          ])),
        );
      }
    }
    if (d.evals.length > 0) parts.push('', formatTable(['site', 'eval loss', 'samples'], d.evals.map((e) => [e.siteId, e.loss.toFixed(4), String(e.samples)])));
    return parts.join('\n');
  });
}

/** Callers refused recently, per reason: "2 tls_handshake, 1 not_member in the last 60 min". */
function refusalsCell(s: StatusResponse__Output): string {
  const window = `in the last ${Math.round(s.refusalsWindowS / 60)} min`;
  const counts = s.recentRefusals.filter((r) => Number(r.count) > 0).map((r) => `${r.count} ${r.reason}`);
  return counts.length > 0 ? `${counts.join(', ')} ${window}` : `none ${window}`;
}

/** In-flight upload bytes of all sites against the coordinator's one budget, and streams waiting for room. */
function budgetCell(s: StatusResponse__Output): string {
  const queued = s.uploadStreamsQueued > 0 ? `, ${s.uploadStreamsQueued} stream${s.uploadStreamsQueued === 1 ? '' : 's'} queued` : '';
  return `${formatBytes(Number(s.uploadBudgetUsedBytes))} of ${formatBytes(Number(s.uploadBudgetBytes))} in flight${queued}`;
}

/** Each aggregator shard the coordinator names (issue 22): its state, part and storage, or why it is not ready. */
export function shardRows(s: Pick<StatusResponse__Output, 'shards'>): string[][] {
  return s.shards.map((shard) => {
    const part = Number(shard.endValue) > 0 ? `values [${shard.firstValue}, ${shard.endValue})` : 'no part yet';
    const free = Number(shard.freeBytes) > 0 ? `, ${formatBytes(Number(shard.freeBytes))} free` : '';
    const at = shard.peer ? ` from ${shard.peer}` : '';
    const uploads = shard.uploadsAdmitted > 0 ? `; parts ${shard.uploadsReceived} of ${shard.uploadsAdmitted} received (${formatBytes(Number(shard.bytesReceived))})` : '';
    const downloads = shard.downloadsAdmitted > 0 || Number(shard.bytesSent) > 0 ? `; model parts ${shard.downloadsServed} of ${shard.downloadsAdmitted} sent (${formatBytes(Number(shard.bytesSent))} in all)` : '';
    return [`shard ${shard.shardIndex}`, `${shard.shardId} (${shard.endpoint}): ${shard.state}${at}; ${part}${free}${uploads}${downloads}${shard.problem ? `; ${shard.problem}` : ''}`];
  });
}

/** A standby pair's leader: who leads under which term, the lease, the standbys and NATS (none without `ha`). */
export function haRows(s: Pick<StatusResponse__Output, 'ha'>): string[][] {
  const ha = s.ha;
  if (!ha) return [];
  const secs = (ms: string | number): string => `${(Number(ms) / 1000).toFixed(1)} s`;
  const n = ha.nats;
  const standbys = ha.standbys.map((b) => `${b.name} at ${b.address} (seen ${secs(b.lastSeenMsAgo)} ago)`);
  const nats = n
    ? `connected to ${n.connectedServer || '-'}; journal leader ${n.journalLeader || 'none'}, ${n.peersCurrent}/${n.peersTotal} peers current (read ${secs(n.checkedMsAgo)} ago)${n.error ? `; ${n.error}` : ''}`
    : '-';
  return [
    ['role', `${ha.role}: ${ha.name} at ${ha.address}, term ${ha.term}`],
    ['lease', `renewed ${secs(ha.leaseAgeMs)} ago (TTL ${secs(ha.leaseTtlMs)})`],
    ['standbys', standbys.length > 0 ? standbys.join(', ') : 'none seen'],
    ['nats', nats],
  ];
}
