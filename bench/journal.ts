/**
 * `npm run bench -- journal --json`: what a commit point costs (issue 19). The same records —
 * `round-committed`-sized bodies — appended one after another to the state dir's journal (a write
 * and an fdatasync each) and to the journal in a JetStream stream replicated on a 3-node NATS
 * cluster on loopback (publish, replicate by Raft, read back on the chain before acknowledging),
 * in the same run. Reports each one's p50/p99/max append latency in ms (`journalAppendP99Ms` is the
 * replicated one's) and their ratio. Loopback has no network delay: across hosts add the round
 * trips between the NATS nodes.
 *
 * Options: --appends N (default 500), --replicas R (3 or 5 nodes, each holding a replica; default 3).
 */
import { connect } from '@nats-io/transport-node';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { JetStreamJournal, Journal } from '../coordinator/index.js';
import { natsServerBinary, startNatsCluster } from '../simulate/index.js';
import type { Benchmark } from './registry.js';

/** A body the size of a `round-committed` record of an 8-site round (about 2 KB of JSON). */
function body(i: number): { type: string; [k: string]: unknown } {
  const participants = Array.from({ length: 8 }, (_, s) => ({ site: `site-${s + 1}`, samples: 1024, tokens: 1_048_576, steps: 64, weight: 0.125, deltaSha256: 'a'.repeat(64), dataManifestSha256: 'b'.repeat(64) }));
  return { type: 'bench', round: i, runId: 'bench-run', parentSha256: 'c'.repeat(64), modelSha256: 'd'.repeat(64), participants };
}

/** p50, p99 and max of a set of latencies, in ms. */
export interface Latency {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

function latency(samples: readonly number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const r = (x: number): number => Math.round(x * 100) / 100;
  return { p50: r(at(0.5)), p99: r(at(0.99)), max: r(sorted.at(-1)!) };
}

/** Times `n` appends of `append`, one at a time. */
async function timeAppends(n: number, append: (i: number) => Promise<unknown>): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await append(i);
    ms.push(performance.now() - t0);
  }
  return ms;
}

/** Append latencies of the state dir's journal and of a JetStream journal, measured one after the other. */
export interface JournalAppendFigures {
  readonly stateDir: Latency;
  readonly jetstream: Latency;
}

/**
 * Times `n` appends (after 20 warm-up ones) to a state dir journal in `dir` and to a JetStream
 * journal on `urls` with `replicas` replicas — the measurement of this benchmark, shared with
 * `bench failover` so both report the same figure the same way.
 */
export async function measureJournalAppends(o: { urls: readonly string[]; replicas: number; n: number; dir: string; log: (line: string) => void }): Promise<JournalAppendFigures> {
  const { n, replicas, log } = o;
  const local = await Journal.open(join(o.dir, 'journal.jsonl'));
  await timeAppends(20, (i) => local.append(body(i))); // warm-up
  const localMs = latency(await timeAppends(n, (i) => local.append(body(i))));
  await local.close();
  log(`state dir journal (write + fdatasync): p50 ${localMs.p50} ms, p99 ${localMs.p99} ms, max ${localMs.max} ms over ${n} appends`);
  const nc = await connect({ servers: [...o.urls] });
  try {
    const js = await JetStreamJournal.open({ nc, stream: 'FEDHPC_JOURNAL_BENCH', subject: 'fedhpc.bench.journal', replicas, term: 1 });
    await timeAppends(20, (i) => js.append(body(i)));
    const jsMs = latency(await timeAppends(n, (i) => js.append(body(i))));
    await js.close();
    log(`JetStream journal (R=${replicas}, publish + read-back on the chain): p50 ${jsMs.p50} ms, p99 ${jsMs.p99} ms, max ${jsMs.max} ms over ${n} appends`);
    return { stateDir: localMs, jetstream: jsMs };
  } finally {
    await nc.close();
  }
}

export const journal: Benchmark = {
  async run(args, log) {
    const { values } = parseArgs({ args, options: { appends: { type: 'string', default: '500' }, replicas: { type: 'string', default: '3' } }, strict: true });
    const n = Number(values.appends);
    const replicas = Number(values.replicas);
    if (!Number.isInteger(n) || n < 10) throw new Error(`--appends must be an integer ≥ 10, got ${values.appends}`);
    if (![3, 5].includes(replicas)) throw new Error(`--replicas must be 3 or 5 (a cluster of that many nodes), got ${values.replicas}`);
    if (!natsServerBinary()) throw new Error('the journal benchmark needs nats-server (apt-get install nats-server)');

    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-journal-'));
    const cluster = await startNatsCluster(replicas);
    try {
      const { stateDir: localMs, jetstream: jsMs } = await measureJournalAppends({ urls: cluster.urls, replicas, n, dir, log });
      return {
        bench: 'journal',
        appends: n,
        replicas,
        journalAppendP50Ms: jsMs.p50,
        journalAppendP99Ms: jsMs.p99,
        journalAppendMaxMs: jsMs.max,
        stateDirAppendP50Ms: localMs.p50,
        stateDirAppendP99Ms: localMs.p99,
        stateDirAppendMaxMs: localMs.max,
        jetstreamOverStateDirP99: Math.round((jsMs.p99 / localMs.p99) * 100) / 100,
      };
    } finally {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
};
