/**
 * A deterministic runner for real TypeScript `SiteAgent`s beside the Python agent: the local model
 * is the global one plus a known Δ (every coordinate i ≡ 3 (mod 7) left at exactly zero, as the
 * Python trainer leaves it), so the test knows each site's delta exactly — as the agent computes it,
 * local − global in f32 — and can check the committed mean itself.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { readBuiltinModel, SiteAgentError, writeBuiltinModel } from '../../site-agent/index.js';
import type { EvalResult, Runner, TrainRequest, TrainResult } from '../../site-agent/runners/runner.js';

/** Options of a {@link FixedDeltaRunner}. */
export interface FixedDeltaRunnerOptions {
  readonly site: string;
  /** Samples declared in `round`. */
  readonly samples: (round: number) => number;
  /** A round whose training fails (the agent reports it and drops out of the attempt, having shared). */
  readonly failRound?: number;
  /** Tokens declared in `round` (default: 8 per sample). */
  readonly tokens?: (round: number) => number;
}

/** Trains by adding a fixed Δ; `deltas` holds, per round, the Δ the agent will compute and send. */
export class FixedDeltaRunner implements Runner {
  readonly kind = 'interop-fixed-delta';
  readonly deltas = new Map<number, Float32Array>();
  private readonly k: number;

  constructor(private readonly o: FixedDeltaRunnerOptions) {
    this.k = Number(o.site.replace(/\D+/g, '')) || 1;
  }

  async train(r: TrainRequest): Promise<TrainResult> {
    if (r.round === this.o.failRound) throw new SiteAgentError('TRAINING_FAILED', `${this.o.site} fails round ${r.round} on purpose (interop test)`, false);
    const { params, config } = await readBuiltinModel(r.globalPath);
    const local = new Map<string, Float32Array>();
    const delta: number[] = [];
    let i = 0;
    for (const [name, global] of params) {
      const out = new Float32Array(global.length);
      for (let j = 0; j < global.length; j++, i++) {
        const v = i % 7 === 3 ? 0 : (((i * this.k + r.round) % 11) - 5) * 1e-4 * this.k;
        out[j] = Math.fround(global[j]! + v);
        delta.push(Math.fround(out[j]! - global[j]!));
      }
      local.set(name, out);
    }
    const outPath = join(r.roundDir, 'out', 'model.safetensors');
    await writeBuiltinModel(outPath, local, config);
    this.deltas.set(r.round, Float32Array.from(delta));
    const samples = this.o.samples(r.round);
    return {
      outPath,
      samples,
      tokens: this.o.tokens?.(r.round) ?? samples * 8,
      steps: 4,
      trainLoss: 1.5,
      dataManifestSha256: createHash('sha256').update(`fixed-delta:${this.o.site}:${r.round}`).digest('hex'),
    };
  }

  evaluate(): Promise<EvalResult> {
    return Promise.resolve({ loss: 2, samples: 20 });
  }
}
