/**
 * Issue 15's second implementation keeps the first honest: the Python site agent of test/interop/
 * (written from docs/protocol.md, the .proto and proto/vectors/ alone) takes part in secure rounds
 * of a real coordinator beside two real TypeScript SiteAgents (with a deterministic runner, so the
 * test knows every delta). Rounds: (1) all take part; (2) the Python agent drops at upload, having
 * shared; (3) a TypeScript site drops after sharing with t = 2 of 3, so the dropped site's mask key
 * can only be rebuilt with the Python agent's share; (4) the Python agent's upload stream is cut
 * mid-stripe and resumed. Each committed update must be the weighted mean of the participants'
 * deltas within the quantization bound, every participant must have sent its receipt and
 * `audit verify` must pass.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readStateDirTrail, verifyAudit } from '../../coordinator/audit/index.js';
import type { AdminClient, CoordinatorHandle } from '../../coordinator/index.js';
import type { RoundInfo__Output } from '../../proto/index.js';
import { initBuiltinModel, loadSiteConfig, resolveBuiltinConfig, SiteAgent, writeBuiltinModel } from '../../site-agent/index.js';
import { skipUnless } from '../helpers/components.js';
import { coordinatorStateDir, journalBodies, journalPath } from '../helpers/faults.js';
import { createTestFederation, startCoordinatorInProcess, waitFor, type TestFederation } from '../helpers/federation.js';
import { expectLogs, testLogger, type LogLine } from '../helpers/logger.js';
import { siteCertFiles } from '../helpers/raw-site.js';
import { expectCommittedMean, secureRun } from '../helpers/secure-federation.js';
import { FixedDeltaRunner } from './fixed-delta-runner.js';
import { generateStubs, INTEROP_DIR, PYTHON, pythonInteropUnavailable } from './python.js';

const skip = skipUnless('python-interop', pythonInteropUnavailable());

const PY = 'site-3';
const ROUNDS = 4;
const PY_DROPS = 2;
const TS_DROPS = 3;
const PY_CUT = 4;
/** Bytes the Python agent sends on round 4's first stream before cutting it. */
const CUT_AFTER = 100_000;

/** One event line of the Python agent's events.jsonl. */
interface PyEvent {
  readonly event: string;
  readonly round?: number;
  readonly [key: string]: unknown;
}

let fed: TestFederation;
let coordinator: CoordinatorHandle;
let admin: AdminClient;
let python: ChildProcess;
let stubs = '';
let pythonExit: Promise<number | string>;
const agents: { agent: SiteAgent; stop: AbortController; done: Promise<void> }[] = [];
const runners = new Map<string, FixedDeltaRunner>();
const dumpDir = (): string => join(fed.dir, 'python-dump');
const pyLog = (): string => join(fed.dir, 'python-agent.log');
let started = 0;

function events(): PyEvent[] {
  const f = join(dumpDir(), 'events.jsonl');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as PyEvent) : [];
}

/** The Python agent's log tail, to understand a failure. */
function pythonTail(): string {
  return existsSync(pyLog()) ? readFileSync(pyLog(), 'utf8').split('\n').slice(-40).join('\n') : '(no log)';
}

function startTsAgent(site: string, failRound?: number): void {
  const runner = new FixedDeltaRunner({ site, samples: (r) => 300 + 100 * Number(site.slice(-1)) + 10 * r, ...(failRound ? { failRound } : {}) });
  runners.set(site, runner);
  const logger = testLogger({ level: 'warn' }).logger;
  const agent = new SiteAgent({ config: loadSiteConfig(fed.files.siteConfigs.get(site)!), runner, logger });
  const stop = new AbortController();
  agents.push({ agent, stop, done: agent.run(stop.signal) });
}

function startPython(stubs: string): void {
  const files = siteCertFiles(fed, PY);
  const out = openSync(pyLog(), 'a');
  python = spawn(
    PYTHON,
    [
      join(INTEROP_DIR, 'fedhpc_agent.py'),
      ...['--address', fed.address, '--ca', files.ca, '--cert', files.cert, '--key', files.key, '--dump', dumpDir(), '--stubs', stubs],
      ...['--drop-at-upload', String(PY_DROPS), '--cut-upload', `${PY_CUT}:${CUT_AFTER}`, '--min-stripe-bytes', String(256 * 1024)],
    ],
    { stdio: ['ignore', out, out], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } },
  );
  pythonExit = new Promise((res) => python.once('exit', (code, sig) => res(code ?? sig ?? -1)));
}

/** The Python agent's delta and declared samples of `round`, from its dump folder. */
function pythonRound(round: number): { delta: Float32Array; samples: number } {
  const bytes = readFileSync(join(dumpDir(), `round-${round}.f32`));
  const meta = JSON.parse(readFileSync(join(dumpDir(), `round-${round}.json`), 'utf8')) as { samples: number };
  return { delta: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), samples: meta.samples };
}

describe.skipIf(skip)('the Python site agent in secure rounds beside TypeScript agents', () => {
  let committed: RoundInfo__Output[] = [];

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 3, run: secureRun({ rounds: ROUNDS, minSites: 2, evaluate: true }) });
    // A larger builtin model (≈ 630 kB of f32), so the Python agent's stripes outgrow the 256 KiB
    // window and see acknowledgements mid-stripe.
    const config = resolveBuiltinConfig({ hidden: 1024 });
    await writeBuiltinModel(fed.files.initialModel, initBuiltinModel(config, 7), config);
    await fed.patchCoordinatorConfig((c) => ({ ...c, limits: { ...(c['limits'] as object), uploadWindowBytes: 256 * 1024 } }));
    stubs = generateStubs();
    coordinator = await startCoordinatorInProcess(fed);
    admin = fed.admin();
    await admin.waitForReady(Date.now() + 15_000);
  }, 60_000);

  afterAll(async () => {
    python?.kill('SIGTERM');
    if (python) await Promise.race([pythonExit, new Promise((r) => setTimeout(r, 5_000))]);
    if (python && python.exitCode === null) python.kill('SIGKILL');
    for (const a of agents) a.stop.abort();
    await Promise.allSettled(agents.map((a) => a.done));
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('runs four secure rounds with the Python agent and two TypeScript agents to the end, receipts included, with no undeclared warning', async () => {
    // site-2 fails round 3 on purpose: its agent reports it, and the coordinator drops it.
    const site2InRound3 = (l: LogLine): boolean => l['site'] === 'site-2' && l['round'] === TS_DROPS;
    expectLogs(
      (l) => l.msg === 'round failed at this site' && site2InRound3(l),
      (l) => l.msg === 'site dropped from round' && site2InRound3(l),
    );
    started = Date.now();
    startTsAgent('site-1');
    startTsAgent('site-2', TS_DROPS);
    startPython(stubs);
    const exited = pythonExit.then((code) => {
      throw new Error(`the Python agent exited (${code})`);
    });
    exited.catch(() => undefined);
    try {
      const everything = waitFor(
        `${ROUNDS} committed rounds and every receipt`,
        async () => {
          const all = (await admin.rounds()).rounds;
          // No attempt may abort: every step of every round must have worked the first time.
          const aborted = all.filter((r) => r.outcome === 'aborted');
          if (aborted.length > 0) return aborted;
          const rounds = all.filter((r) => r.outcome === 'committed');
          if (rounds.length < ROUNDS) return undefined;
          const receipts = await journalBodies(journalPath(fed), 'receipt');
          const expected = rounds.reduce((n, r) => n + r.participants.length, 0);
          return receipts.length >= expected ? rounds : undefined;
        },
        90_000,
        250,
      );
      const rounds = await Promise.race([everything, exited]);
      const aborted = rounds.filter((r) => r.outcome === 'aborted');
      if (aborted.length > 0) throw new Error(`attempts aborted: ${aborted.map((r) => `${r.round}.${r.attempt}: ${r.reason}`).join('; ')}`);
      committed = rounds;
      process.stdout.write(`python interop: ${ROUNDS} secure rounds in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      if (process.env['FEDHPC_INTEROP_DEBUG']) process.stdout.write(`${readFileSync(join(dumpDir(), 'events.jsonl'), 'utf8')}\n`);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- Python agent\n${pythonTail()}`);
    }
  }, 120_000);

  it('is a participant of every round it did not drop, and the TypeScript site that failed round 3 is not', async () => {
    const journaled = await journalBodies(journalPath(fed), 'round-committed');
    const withPython = journaled.filter((b) => (b['participants'] as { site: string }[]).some((p) => p.site === PY)).map((b) => b['round']);
    expect(withPython).toEqual([1, TS_DROPS, PY_CUT]);
    const byRound = new Map(committed.map((r) => [Number(r.round), [...r.participants].sort()]));
    expect(byRound.get(1)).toEqual(['site-1', 'site-2', 'site-3']);
    expect(byRound.get(PY_DROPS)).toEqual(['site-1', 'site-2']);
    expect(byRound.get(TS_DROPS)).toEqual(['site-1', 'site-3']);
    expect(byRound.get(PY_CUT)).toEqual(['site-1', 'site-2', 'site-3']);
    expect(committed.filter((r) => Number(r.round) === PY_DROPS)[0]!.dropped).toEqual([PY]);
  });

  it('commits, each round, the weighted mean of the deltas the test computes on its own, within the quantization bound', async () => {
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3, 4]);
    for (const info of committed) {
      const round = Number(info.round);
      const deltas = new Map<string, Float32Array>();
      const samples = new Map<string, number>();
      for (const site of info.participants) {
        if (site === PY) {
          const p = pythonRound(round);
          deltas.set(site, p.delta);
          samples.set(site, p.samples);
        } else {
          deltas.set(site, runners.get(site)!.deltas.get(round)!);
          samples.set(site, 300 + 100 * Number(site.slice(-1)) + 10 * round);
        }
      }
      await expectCommittedMean(fed, info, deltas, samples);
    }
  });

  it('needed the Python agent in round 3: it revealed its share of the dropped site-2 mask key', () => {
    const revealed = events().filter((e) => e.event === 'revealed' && e.round === TS_DROPS);
    expect(revealed).toHaveLength(1);
    expect(revealed[0]!['shares']).toEqual(expect.arrayContaining([['site-2', 'mask_key'], ['site-1', 'self_seed'], ['site-3', 'self_seed']]));
    const signed = events().find((e) => e.event === 'signed' && e.round === TS_DROPS);
    expect(signed).toMatchObject({ survivors: ['site-1', 'site-3'], dropped: ['site-2'] });
  });

  it('dropped at upload in round 2 having shared, and resumed round 4 mid-stripe after its stream was cut', () => {
    const ev = events();
    const round2 = ev.filter((e) => e.round === PY_DROPS).map((e) => e.event);
    expect(round2).toEqual(expect.arrayContaining(['advertised', 'shared', 'dropping']));
    expect(round2).not.toContain('uploaded');
    const cut = ev.find((e) => e.event === 'upload-cut' && e.round === PY_CUT);
    const resumed = ev.find((e) => e.event === 'upload-resumed' && e.round === PY_CUT);
    expect(cut, 'the stream was cut').toBeDefined();
    expect(resumed, 'the stripe resumed').toBeDefined();
    const offset = resumed!['offset'] as number;
    expect(offset).toBeGreaterThan(resumed!['stripe_start'] as number);
    expect(offset).toBeLessThan(resumed!['stripe_end'] as number);
    expect(ev.find((e) => e.event === 'uploaded' && e.round === PY_CUT)).toBeDefined();
    // Striped and windowed: more than one stripe, larger than the coordinator's window.
    const uploading = ev.find((e) => e.event === 'uploading' && e.round === PY_CUT)!;
    expect((uploading['stripes'] as unknown[]).length).toBeGreaterThan(1);
  });

  it('sent a receipt of every round it took part in, and audit verify passes with none missing', async () => {
    const receipts = (await journalBodies(journalPath(fed), 'receipt')).filter((b) => b['site'] === PY).map((b) => b['round']);
    expect(receipts.sort()).toEqual([1, TS_DROPS, PY_CUT]);
    const ca = new X509Certificate(readFileSync(siteCertFiles(fed, PY).ca, 'utf8'));
    const report = verifyAudit(await readStateDirTrail(coordinatorStateDir(fed)), { ca: [ca], requireReceipts: true });
    expect(report).toMatchObject({ ok: true, committedRounds: ROUNDS, missingReceipts: [] });
    expect(report.receipts).toBe(committed.reduce((n, r) => n + r.participants.length, 0));
  });
});
