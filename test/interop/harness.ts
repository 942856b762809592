/**
 * What the interop tests share: a federation whose coordinator runs in this process, the Python
 * agent (test/interop/fedhpc_agent.py) as a child process with its dump folder, real TypeScript
 * SiteAgents with a deterministic runner, and a wait for a whole run with every receipt.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AdminClient, CoordinatorHandle, CoordinatorOptions } from '../../coordinator/index.js';
import type { RoundInfo__Output } from '../../proto/index.js';
import { initBuiltinModel, loadSiteConfig, resolveBuiltinConfig, SiteAgent, writeBuiltinModel } from '../../site-agent/index.js';
import { journalBodies, journalPath } from '../helpers/faults.js';
import { createTestFederation, startCoordinatorInProcess, waitFor, type TestFederation } from '../helpers/federation.js';
import { testLogger } from '../helpers/logger.js';
import { siteCertFiles } from '../helpers/raw-site.js';
import { FixedDeltaRunner } from './fixed-delta-runner.js';
import { loadShardConfig } from '../../coordinator/shards/config.js';
import { runShard } from '../../coordinator/shards/shard.js';
import { generateStubs, INTEROP_DIR, PYTHON } from './python.js';

/** One line of the Python agent's events.jsonl. */
export interface PyEvent {
  readonly event: string;
  readonly round?: number;
  readonly [key: string]: unknown;
}

/** What the Python agent trained in a round, as its dump's round-<r>.json says. */
export interface PyRound {
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  readonly attempt: number;
  /** The global model it trained from, and the round that committed it. */
  readonly base: string;
  readonly modelRound: number;
  readonly trainStartedMs: number;
  readonly trainFinishedMs: number;
  /** The sum of its steps' durations, ms (the header's busy_ms). */
  readonly busyMs: number;
  /** The end of each step, Unix ms. */
  readonly stepTs: readonly number[];
}

/** Samples a TypeScript site declares in `round` (the Python agent's are in its dump). */
export function tsSamples(site: string, round: number): number {
  return 300 + 100 * Number(site.replace(/\D+/g, '')) + 10 * round;
}

/** The Python agent as a child process. */
export class PythonAgent {
  readonly dump: string;
  readonly log: string;
  readonly exited: Promise<number | string>;
  private readonly child: ChildProcess;

  /** `addresses`: the coordinator addresses it is given, in order (default: the federation's coordinator). */
  constructor(fed: TestFederation, site: string, stubs: string, flags: readonly string[], addresses: readonly string[] = [fed.address]) {
    this.dump = join(fed.dir, `python-${site}`);
    this.log = join(fed.dir, `python-${site}.log`);
    const files = siteCertFiles(fed, site);
    const out = openSync(this.log, 'a');
    const args = [...addresses.flatMap((a) => ['--address', a]), '--ca', files.ca, '--cert', files.cert, '--key', files.key, '--dump', this.dump, '--stubs', stubs, ...flags];
    this.child = spawn(PYTHON, [join(INTEROP_DIR, 'fedhpc_agent.py'), ...args], { stdio: ['ignore', out, out], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    this.exited = new Promise((res) => this.child.once('exit', (code, sig) => res(code ?? sig ?? -1)));
  }

  events(): PyEvent[] {
    const f = join(this.dump, 'events.jsonl');
    return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as PyEvent) : [];
  }

  /** The log's last lines, to understand a failure. */
  tail(): string {
    return existsSync(this.log) ? readFileSync(this.log, 'utf8').split('\n').slice(-40).join('\n') : '(no log)';
  }

  /** The delta it trained in `round` and what it declared, from its dump folder. */
  round(round: number): { delta: Float32Array } & PyRound {
    const bytes = readFileSync(join(this.dump, `round-${round}.f32`));
    const meta = JSON.parse(readFileSync(join(this.dump, `round-${round}.json`), 'utf8')) as PyRound;
    return { ...meta, delta: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) };
  }

  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 5_000))]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** A federation with an in-process coordinator, and the agents the test starts in it. */
export class InteropFederation {
  readonly runners = new Map<string, FixedDeltaRunner>();
  readonly pythons: PythonAgent[] = [];
  private readonly agents: { stop: AbortController; done: Promise<void> }[] = [];
  private stubs = '';

  private constructor(
    readonly fed: TestFederation,
    readonly coordinator: CoordinatorHandle,
    readonly admin: AdminClient,
  ) {}

  /**
   * Provisions `sites` sites, writes a larger builtin model (≈ 630 kB of f32, so the Python agent's
   * stripes outgrow the 256 KiB upload window and see acknowledgements mid-stripe) and starts the
   * coordinator with `run`.
   */
  static async start(sites: number, run: Partial<CoordinatorOptions['run']>, o: { readonly shards?: number } = {}): Promise<InteropFederation> {
    const fed = await createTestFederation({ sites, run, aggregators: o.shards ?? 0 });
    const config = resolveBuiltinConfig({ hidden: 1024 });
    await writeBuiltinModel(fed.files.initialModel, initBuiltinModel(config, 7), config);
    await fed.patchCoordinatorConfig((c) => ({ ...c, limits: { ...(c['limits'] as object), uploadWindowBytes: 256 * 1024 } }));
    const coordinator = await startCoordinatorInProcess(fed);
    const admin = fed.admin();
    await admin.waitForReady(Date.now() + 15_000);
    const f = new InteropFederation(fed, coordinator, admin);
    f.stubs = generateStubs();
    // Aggregator shards in this process, ready before any site starts (so that every upload goes in parts).
    for (const file of fed.files.aggregatorConfigs.values()) {
      const stop = new AbortController();
      f.agents.push({ stop, done: runShard({ config: { ...loadShardConfig(file), reconnect: { initialMs: 50, maxMs: 500 } }, logger: testLogger({ level: 'warn' }).logger, signal: stop.signal }) });
    }
    if (fed.files.aggregatorConfigs.size > 0) {
      await waitFor('the shards ready', async () => ((await admin.status()).shards.every((s) => s.state === 'ready') ? true : undefined), 20_000, 100);
    }
    return f;
  }

  /** A real TypeScript agent for `site` whose runner adds a known Δ (and fails `failRound`; declares `tokens`). */
  startTsAgent(site: string, failRound?: number, tokens?: (round: number) => number): void {
    const runner = new FixedDeltaRunner({ site, samples: (r) => tsSamples(site, r), ...(failRound ? { failRound } : {}), ...(tokens ? { tokens } : {}) });
    this.runners.set(site, runner);
    const agent = new SiteAgent({ config: loadSiteConfig(this.fed.files.siteConfigs.get(site)!), runner, logger: testLogger({ level: 'warn' }).logger });
    const stop = new AbortController();
    this.agents.push({ stop, done: agent.run(stop.signal) });
  }

  startPython(site: string, flags: readonly string[] = [], addresses?: readonly string[]): PythonAgent {
    const p = new PythonAgent(this.fed, site, this.stubs, flags, addresses);
    this.pythons.push(p);
    return p;
  }

  /**
   * Waits until `rounds` rounds are committed and every participant's receipt is journaled; fails at
   * once when an attempt aborts (every step must work the first time) or the Python agent exits.
   */
  async completed(rounds: number, timeoutMs = 90_000): Promise<RoundInfo__Output[]> {
    const exits = this.pythons.map((p) =>
      p.exited.then((code) => {
        throw new Error(`the Python agent exited (${code})`);
      }),
    );
    for (const e of exits) e.catch(() => undefined);
    const done = waitFor(
      `${rounds} committed rounds and every receipt`,
      async () => {
        const all = (await this.admin.rounds()).rounds;
        const aborted = all.filter((r) => r.outcome === 'aborted');
        if (aborted.length > 0) return aborted;
        const committed = all.filter((r) => r.outcome === 'committed');
        if (committed.length < rounds) return undefined;
        const receipts = await journalBodies(journalPath(this.fed), 'receipt');
        return receipts.length >= committed.reduce((n, r) => n + r.participants.length, 0) ? committed : undefined;
      },
      timeoutMs,
      250,
    );
    try {
      const r = await Promise.race([done, ...exits]);
      const aborted = r.filter((x) => x.outcome === 'aborted');
      if (aborted.length > 0) throw new Error(`attempts aborted: ${aborted.map((x) => `${x.round}.${x.attempt}: ${x.reason}`).join('; ')}`);
      return r;
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${this.pythons.map((p) => `--- ${p.log}\n${p.tail()}`).join('\n')}`);
    }
  }

  /** Each participant's delta and samples in `round`: the Python agents' from their dumps. */
  deltas(info: RoundInfo__Output, python: ReadonlyMap<string, PythonAgent>): { deltas: Map<string, Float32Array>; samples: Map<string, number> } {
    const round = Number(info.round);
    const deltas = new Map<string, Float32Array>();
    const samples = new Map<string, number>();
    for (const site of info.participants) {
      const p = python.get(site);
      if (p) {
        const r = p.round(round);
        deltas.set(site, r.delta);
        samples.set(site, r.samples);
      } else {
        deltas.set(site, this.runners.get(site)!.deltas.get(round)!);
        samples.set(site, tsSamples(site, round));
      }
    }
    return { deltas, samples };
  }

  async close(): Promise<void> {
    await Promise.all(this.pythons.map((p) => p.stop()));
    for (const a of this.agents) a.stop.abort();
    await Promise.allSettled(this.agents.map((a) => a.done));
    await this.coordinator.stop();
    await this.fed.cleanup();
  }
}
