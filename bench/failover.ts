/**
 * `npm run bench -- failover --json`: what losing the leader of a standby pair costs (issue 19).
 * `fedhpc simulate`'s pair (simulate/ha-pair.ts): 4 builtin sites, plain rounds, two coordinator
 * processes over a 3-node NATS JetStream cluster on loopback, the product's lease (TTL 20 s) unless
 * `--ttl-ms` says otherwise. Two cases, each a fresh federation: the leader SIGKILLs itself in
 * `upload` once half the bytes of round 1's deltas have arrived (`upload.half`; the sites send 4 KiB
 * chunks at 64 KB/s each, so every upload is under way), and inside `commit` between the checkpoint
 * write and the journal append (`commit.before-journal`) — both through the coordinator's kill
 * points (coordinator/core/crash-points.ts), so the kill lands in the window exactly.
 *
 * Reports per case `failoverS` (the leader's death → the first admin call the new leader answers),
 * and from the replicated journal `committedRoundsLost` (announced committed, absent from the chain)
 * and `roundsRepeated` (committed twice); and `journalAppendP99Ms` (JetStream, R=3) beside
 * `stateDirAppendP99Ms` (write + fdatasync), measured in the same run as `bench journal` does.
 * `uploadBytesReusedRatio`: the bytes the new leader's attempt kept (the chain's `bytesReused`,
 * upload/reuse.ts) ÷ the bytes the dead leader had received (its log's kill line), spools shared
 * (target ≥ 0.9); the commit case's figure is `commitBytesReused` (every upload was complete).
 *
 * Options: --ttl-ms MS (default the product's), --rounds N (default 3), --sites N (default 4),
 * --appends N (journal appends timed, default 200).
 *
 * `--load-minutes M` runs the load mode instead (bench/failover-load.ts, issue 19's "under the
 * 8-site upload load for 10 minutes: zero leadership changes"): no kill, a pair that must keep
 * its leader for M minutes while --sites N (default 8) stand-in sites upload --params N F32
 * parameters (default 50,000,000: 200 MB of f32 delta per site and round) in plain rounds as fast
 * as the machine lets them. It reports the journal's leadership changes, rounds committed, upload
 * bytes and MB/s, the leader's lease age and renewal gaps, its event-loop delay and admin
 * `status` latency, and fails on any leadership change. --keep keeps its folder (logs, state).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { LEASE_DEFAULTS, type CrashPoint } from '../coordinator/index.js';
import { natsServerBinary, simulate, startNatsCluster, type PairLease, type PairSummary } from '../simulate/index.js';
import { LOAD_PARAMS, runFailoverLoad } from './failover-load.js';
import { measureJournalAppends } from './journal.js';
import type { Benchmark } from './registry.js';

/** Sites' uploads in the upload case: small chunks at a pace that keeps every upload under way when half the bytes are in. */
const SLOW_UPLOADS = { chunkBytes: 4096, uploadRateBytesPerS: 65_536 } as const;

const CASES: readonly { readonly name: string; readonly at: CrashPoint; readonly siteTransfer?: typeof SLOW_UPLOADS }[] = [
  { name: 'upload', at: 'upload.half', siteTransfer: SLOW_UPLOADS },
  { name: 'commit', at: 'commit.before-journal' },
];

/** The lease for a TTL: the product's defaults, or renewal and margin in the defaults' proportions. */
function leaseFor(ttlMs: number): PairLease {
  if (ttlMs === LEASE_DEFAULTS.ttlMs) return { ttlMs, renewMs: LEASE_DEFAULTS.renewMs, marginMs: LEASE_DEFAULTS.marginMs };
  return { ttlMs, renewMs: Math.round((ttlMs * LEASE_DEFAULTS.renewMs) / LEASE_DEFAULTS.ttlMs), marginMs: Math.round((ttlMs * LEASE_DEFAULTS.marginMs) / LEASE_DEFAULTS.ttlMs) };
}

function positiveInt(text: string, name: string, min: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${text}`);
  return n;
}

/** One case: a fresh federation whose first leader dies at `at`; its pair summary. */
async function runCase(o: { at: CrashPoint; siteTransfer: typeof SLOW_UPLOADS | undefined; sites: number; rounds: number; lease: PairLease; log: (line: string) => void }): Promise<PairSummary> {
  const dir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-failover-'));
  try {
    const summary = await simulate({
      sites: o.sites,
      rounds: o.rounds,
      strategy: 'diloco',
      stateDir: dir,
      minSites: o.sites - 1,
      secure: false,
      pair: { natsNodes: 3, killLeaderAt: o.at, lease: o.lease, siteTransfer: o.siteTransfer },
      cliPath: resolve('dist/cli/main.js'),
      timeoutS: 600,
      emit: (r) => {
        if (r.type === 'leader') o.log(`  leader ${r.holder} (term ${r.term})${r.previous ? `: ${r.failoverS?.toFixed(1)} s after ${r.previous} died at ${r.killedAt} of round ${r.round}` : ''}`);
        if (r.type === 'round') o.log(`  round ${r.round} committed: ${r.participants.length} sites, ${r.seconds.toFixed(1)} s`);
      },
    });
    if (!summary.ha) throw new Error('the pair simulation reported no pair summary');
    return summary.ha;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const failover: Benchmark = {
  async run(args, log) {
    const { values } = parseArgs({
      args,
      options: {
        'ttl-ms': { type: 'string', default: String(LEASE_DEFAULTS.ttlMs) },
        rounds: { type: 'string', default: '3' },
        sites: { type: 'string' },
        appends: { type: 'string', default: '200' },
        'load-minutes': { type: 'string' },
        params: { type: 'string', default: String(LOAD_PARAMS) },
        keep: { type: 'boolean', default: false },
      },
      strict: true,
    });
    const lease = leaseFor(positiveInt(values['ttl-ms'], 'ttl-ms', 1000));
    if (!natsServerBinary()) throw new Error('the failover benchmark needs nats-server (apt-get install nats-server)');
    if (values['load-minutes'] !== undefined) {
      const minutes = positiveInt(values['load-minutes'], 'load-minutes', 1);
      const loadSites = positiveInt(values.sites ?? '8', 'sites', 2);
      const params = positiveInt(values.params, 'params', 4000);
      log(`lease TTL ${lease.ttlMs / 1000} s, renewed every ${lease.renewMs / 1000} s, margin ${lease.marginMs / 1000} s; ${loadSites} stand-in sites uploading ${params / 1e6} M F32 parameters a round, for ${minutes} min`);
      const figures: Record<string, number | string | boolean> = { bench: 'failover', mode: 'load', ...(await runFailoverLoad({ minutes, sites: loadSites, params, lease, keep: values.keep, log })) };
      return figures;
    }
    const rounds = positiveInt(values.rounds, 'rounds', 2);
    const sites = positiveInt(values.sites ?? '4', 'sites', 2);
    const appends = positiveInt(values.appends, 'appends', 10);
    log(`lease TTL ${lease.ttlMs / 1000} s, renewed every ${lease.renewMs / 1000} s, margin ${lease.marginMs / 1000} s; ${sites} builtin sites, ${rounds} plain rounds`);

    const results: Record<string, PairSummary> = {};
    for (const c of CASES) {
      log(`case ${c.name}: the leader SIGKILLed at ${c.at} (its first time, round 1)`);
      const h = await runCase({ at: c.at, siteTransfer: c.siteTransfer, sites, rounds, lease, log });
      if (h.leaderChanges !== 1) throw new Error(`case ${c.name}: ${h.leaderChanges} leader changes, expected 1`);
      const before = h.bytesBeforeKill !== undefined ? `, ${h.bytesBeforeKill} upload bytes received before the kill` : '';
      log(`  failover ${h.failoverS?.toFixed(1)} s; rounds committed ${h.committedRounds.join(',')}; lost ${h.committedRoundsLost}, repeated ${h.roundsRepeated}${before}; ${h.bytesReused} kept by the new attempt`);
      results[c.name] = h;
    }

    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-failover-journal-'));
    const cluster = await startNatsCluster(3);
    let journal: Awaited<ReturnType<typeof measureJournalAppends>>;
    try {
      journal = await measureJournalAppends({ urls: cluster.urls, replicas: 3, n: appends, dir, log });
    } finally {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    }
    const upload = results['upload']!;
    const commit = results['commit']!;
    if (upload.bytesBeforeKill === undefined) throw new Error('case upload: the dead leader\'s log does not say how many bytes it had received');
    const ratio = upload.bytesReused / upload.bytesBeforeKill;
    log(`uploadBytesReused ÷ bytes received before the kill = ${upload.bytesReused} / ${upload.bytesBeforeKill} = ${ratio.toFixed(3)} (target ≥ 0.9)`);
    const r1 = (x: number | undefined): number => Math.round((x ?? NaN) * 10) / 10;
    return {
      bench: 'failover',
      sites,
      rounds,
      leaseTtlS: lease.ttlMs / 1000,
      failoverS: r1(Math.max(upload.failoverS ?? NaN, commit.failoverS ?? NaN)),
      failoverUploadS: r1(upload.failoverS),
      failoverCommitS: r1(commit.failoverS),
      committedRoundsLost: upload.committedRoundsLost + commit.committedRoundsLost,
      roundsRepeated: upload.roundsRepeated + commit.roundsRepeated,
      roundsCommittedUpload: upload.committedRounds.join(','),
      roundsCommittedCommit: commit.committedRounds.join(','),
      journalAppendP99Ms: journal.jetstream.p99,
      stateDirAppendP99Ms: journal.stateDir.p99,
      uploadBytesBeforeKill: upload.bytesBeforeKill,
      uploadBytesReused: upload.bytesReused,
      uploadBytesReusedRatio: Math.round(ratio * 1000) / 1000,
      commitBytesReused: commit.bytesReused,
    };
  },
};
