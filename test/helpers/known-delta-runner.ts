/**
 * Real site agents for the tests of late and fallen-behind sites (issue 16), in this process beside
 * an in-process coordinator, each with a stand-in trainer whose deltas the test knows exactly:
 * {@link KnownDeltaRunner} does not train, it writes the global model plus a fixed Δ per site and
 * round, and may take its time (`delayMs`) so a site misses a round's window. The agent computes
 * its delta from the two files as it always does (local − global in f32), which is what the runner
 * records; the test weighs its expected means from those records.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { sleep } from '../../common/backoff.js';
import { loadSiteConfig, readBuiltinModel, SiteAgent, writeBuiltinModel, type ResolvedSiteConfig } from '../../site-agent/index.js';
import type { EvalResult, Runner, TrainRequest, TrainResult } from '../../site-agent/runners/runner.js';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import type { TestFederation } from './federation.js';
import { testLogger, type ExpectedLog, type TestLogger } from './logger.js';

/** What one call of {@link KnownDeltaRunner.train} trained: its Δ (f32, by tensor name), from which model. */
export interface KnownShard {
  readonly round: number;
  readonly globalSha256: string;
  readonly delta: ReadonlyMap<string, Float32Array>;
  readonly samples: number;
}

export interface KnownDeltaRunnerOptions {
  readonly site: string;
  /** Samples (tokens: 8 per sample) the shard of `round` declares. */
  readonly samples: (round: number) => number;
  /** How long the shard of `round` takes (0 when absent); the runner's signal stops the wait. */
  readonly delayMs?: (round: number) => number;
  /** Called as a shard starts (a test plants kept work here, at a known point of the round). */
  readonly beforeTrain?: (r: TrainRequest) => Promise<void>;
}

/** A stand-in trainer with known deltas (see the module comment). */
export class KnownDeltaRunner implements Runner {
  readonly kind = 'known-delta';
  /** Every shard trained to the end, in the order they finished. */
  readonly shards: KnownShard[] = [];
  private readonly k: number;

  constructor(private readonly o: KnownDeltaRunnerOptions) {
    this.k = Number(o.site.replace(/\D+/g, '')) || 1;
  }

  async train(r: TrainRequest): Promise<TrainResult> {
    await this.o.beforeTrain?.(r);
    const delay = this.o.delayMs?.(r.round) ?? 0;
    if (delay > 0) await sleep(delay, r.signal);
    r.signal.throwIfAborted();
    const { params, config } = await readBuiltinModel(r.globalPath);
    const local = new Map<string, Float32Array>();
    const delta = new Map<string, Float32Array>();
    let i = 0;
    for (const [name, global] of params) {
      const out = new Float32Array(global.length);
      const d = new Float32Array(global.length);
      for (let j = 0; j < global.length; j++, i++) {
        // Every seventh coordinate untouched; the rest small, distinct per site and round.
        const v = i % 7 === 3 ? 0 : (((i * this.k + 3 * r.round) % 13) - 6) * 1e-4 * this.k;
        out[j] = Math.fround(global[j]! + v);
        d[j] = Math.fround(out[j]! - global[j]!);
      }
      local.set(name, out);
      delta.set(name, d);
    }
    const outPath = join(r.roundDir, 'out', 'model.safetensors');
    await writeBuiltinModel(outPath, local, config);
    const samples = this.o.samples(r.round);
    this.shards.push({ round: r.round, globalSha256: r.globalSha256, delta, samples });
    r.onProgress({ step: 4, steps: 4, loss: 1.5 });
    const now = Date.now();
    return {
      outPath,
      samples,
      tokens: samples * 8,
      steps: 4,
      trainLoss: 1.5,
      dataManifestSha256: createHash('sha256').update(`known-delta:${this.o.site}:${r.round}:${r.attempt}`).digest('hex'),
      trainStartedMs: now - delay,
      trainFinishedMs: now,
    };
  }

  /** The shard trained from `globalSha256` (the test's view of one piece of work). */
  shardFrom(globalSha256: string): KnownShard {
    const s = this.shards.filter((x) => x.globalSha256 === globalSha256);
    if (s.length !== 1) throw new Error(`${s.length} shards trained from ${globalSha256.slice(0, 12)}, expected one`);
    return s[0]!;
  }

  evaluate(): Promise<EvalResult> {
    return Promise.resolve({ loss: 2, samples: 20 });
  }
}

/** A site agent of a test federation running in this process. */
export interface InProcessAgent {
  readonly site: string;
  readonly config: ResolvedSiteConfig;
  readonly runner: KnownDeltaRunner;
  readonly log: TestLogger;
  /** Stops the agent (its run resolves; shards still training are stopped, nothing is written). */
  stop(): Promise<void>;
}

/** Starts `site` of `fed` in this process with a {@link KnownDeltaRunner}; `configure` edits its config. */
export function startKnownDeltaAgent(
  fed: TestFederation,
  runner: KnownDeltaRunner,
  site: string,
  o: { readonly configure?: (c: ResolvedSiteConfig) => ResolvedSiteConfig; readonly expectLogs?: readonly ExpectedLog[] } = {},
): InProcessAgent {
  const base = loadSiteConfig(fed.files.siteConfigs.get(site)!);
  const config = o.configure ? o.configure(base) : base;
  const log = testLogger({ expect: o.expectLogs ?? [], level: 'info' });
  const agent = new SiteAgent({ config, runner, logger: log.logger, random: () => 0.5 });
  const lifetime = new AbortController();
  const done = agent.run(lifetime.signal);
  return {
    site,
    config,
    runner,
    log,
    async stop() {
      lifetime.abort();
      await done;
    },
  };
}

/** `site-N`'s samples in round r, distinct per site and round: the fold tests' declared counts. */
export const knownSamples = (site: string) => (round: number): number => 300 + 100 * Number(site.slice(-1)) + 10 * round;

/**
 * What one fold test starts — its federation, the in-process coordinator, the agents — and stops
 * after each test (`afterEach(() => run.stop())`): the agents first, then the coordinator, then the files.
 */
export class FoldTestRun {
  fed: TestFederation | undefined;
  coordinator: CoordinatorHandle | undefined;
  agents: InProcessAgent[] = [];

  async stop(): Promise<void> {
    for (const a of this.agents) await a.stop();
    this.agents = [];
    await this.coordinator?.stop();
    this.coordinator = undefined;
    await this.fed?.cleanup();
    this.fed = undefined;
  }
}
