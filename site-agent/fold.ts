/**
 * Folding kept work into an upload (docs/protocol.md, "Bases, staleness and folded work"): which
 * kept parts go with the fresh delta, the weight W they make together, and the one delta sent,
 *
 *   Δ = (F·clip(Δ_f) + λ·Σ S_i·clip(Δ_i)) / W
 *
 * with F, S_i, λ and W from `uploadWeight` (aggregation/staleness.ts), which the coordinator runs
 * on the clear header too, so both sides agree on every integer. The clip c applies in secure
 * rounds only (SecAggParams.clip); plain rounds mix unclipped. Each part's Δ is the f32 difference
 * the encoder would send (local − base, element by element in f32); the mix is computed in float64
 * and rounded to float32 once.
 */
import { declaredCount, discountedCount, openSafetensors, uploadWeight, type DeclaredCounts, type SafetensorsFile, type Weighting } from '../aggregation/index.js';
import { openFileSource, type FileSource } from '../common/files.js';
import { writeF32File } from './delta.js';
import type { TaskTensor } from './encode.js';
import { SiteAgentError } from './errors.js';
import type { KeptPart } from './kept-work.js';
import type { TrainTask } from './wire.js';

/** What a fold is weighed by: the run's weighting and maxSiteWeight, and the clip of a secure round. */
export interface FoldTerms {
  readonly weighting: Weighting;
  readonly maxSiteWeight: number;
  /** SecAggParams.clip in a secure round; undefined in a plain one (no clip). */
  readonly clip: number | undefined;
}

/** A kept part that goes into the upload. */
export interface FoldedPartPlan {
  readonly part: KeptPart;
  /** Rounds its base lies behind the task's model. */
  readonly staleness: number;
  /** S_i: its count in the run's unit, discounted for staleness. */
  readonly discounted: number;
  /** λ·S_i: what it counts in the upload (the coordinator journals it as the part's count). */
  readonly count: number;
}

/** The upload a fold makes: W and its parts, and the kept parts that can never be sent. */
export interface FoldPlan {
  /** W: the count the upload weighs with (F + λ·S). */
  readonly weight: number;
  /** F: the fresh part's count (its staleness is 0: it trained from the task's model). */
  readonly fresh: number;
  /** λ: the scale that fits the folded parts under maxSiteWeight. */
  readonly foldScale: number;
  readonly parts: readonly FoldedPartPlan[];
  /** Parts to drop for good, with why: no later upload could send them. */
  readonly dropped: readonly { readonly part: KeptPart; readonly why: string }[];
  /** Why parts that stay kept are not folded now (undefined when every part still kept is folded). */
  readonly notNow: string | undefined;
}

/**
 * Which kept parts `t`'s upload folds. Dropped for good: parts of another run, parts trained from
 * the task's own model or a newer one (the fresh work supersedes them), parts more than
 * `max_staleness` rounds old, and parts whose discounted count is 0. The rest are folded, freshest
 * first and at most `max_staleness` of them, unless there are no `terms` (a task without the run's
 * weighting and maxSiteWeight) or the fresh part leaves no room under maxSiteWeight.
 */
export function planFold(t: TrainTask, fresh: DeclaredCounts, kept: readonly KeptPart[], terms: FoldTerms | undefined): FoldPlan {
  const maxStaleness = t.maxStaleness ?? 0;
  const dropped: { part: KeptPart; why: string }[] = [];
  const candidates: { part: KeptPart; staleness: number }[] = [];
  for (const part of kept) {
    const staleness = t.modelRound - part.baseModelRound;
    if (part.runId !== t.runId) dropped.push({ part, why: `trained for run ${part.runId}, not ${t.runId}` });
    else if (part.baseModelSha256 === t.globalModel.sha256 || staleness <= 0) dropped.push({ part, why: 'superseded: this task trains from the same model or a newer one' });
    else if (staleness > maxStaleness) dropped.push({ part, why: `${staleness} rounds old, more than max_staleness ${maxStaleness}` });
    else if (terms && discountedCount(declaredCount(terms.weighting, part), staleness) === 0) dropped.push({ part, why: `counts nothing after the staleness discount (${terms.weighting} at staleness ${staleness})` });
    else candidates.push({ part, staleness });
  }
  const none = (notNow: string | undefined, weight = 0, f = 0): FoldPlan => ({ weight, fresh: f, foldScale: 1, parts: [], dropped, notNow: candidates.length > 0 ? notNow : undefined });
  if (!terms) return none('the task does not say the run\'s weighting and maxSiteWeight (a coordinator before they were sent)');
  // Distinct bases of a run lie in distinct rounds, so at most max_staleness remain; the cap is the protocol's.
  const chosen = candidates.sort((a, b) => a.staleness - b.staleness).slice(0, maxStaleness);
  const freshPart = { count: declaredCount(terms.weighting, fresh), staleness: 0 };
  const w = uploadWeight(freshPart, chosen.map((c) => ({ count: declaredCount(terms.weighting, c.part), staleness: c.staleness })), terms.maxSiteWeight);
  if (!w.ok) return none(`the fresh work alone is out of range: ${w.issues.join('; ')}`);
  const { weight, fresh: f, folded, foldScale } = w.value;
  if (foldScale === 0) return none(`the fresh work fills maxSiteWeight ${terms.maxSiteWeight}: no room to fold`, weight, f);
  const parts = chosen.map((c, i) => ({ part: c.part, staleness: c.staleness, discounted: folded[i]!, count: folded[i]! * foldScale }));
  return { weight, fresh: f, foldScale, parts, dropped, notNow: undefined };
}

/** The weights of one mix: F, each part's λ·S_i, W, and the clip (undefined: none). */
export interface MixWeights {
  readonly fresh: number;
  readonly parts: readonly number[];
  readonly total: number;
  readonly clip: number | undefined;
}

/**
 * out[j] = f32((F·clip(fresh[j]) + Σ λS_i·clip(parts_i[j])) / W), in float64 (parts added in order).
 * The one formula the agent mixes with, exported so tests weigh their own expectations by it.
 */
export function mixDeltas(out: Float32Array, fresh: Float32Array, parts: readonly Float32Array[], m: MixWeights): Float32Array {
  const c = m.clip;
  const clip = c === undefined ? (x: number): number => x : (x: number): number => Math.max(-c, Math.min(c, x));
  for (let j = 0; j < out.length; j++) {
    let acc = m.fresh * clip(fresh[j]!);
    for (let i = 0; i < parts.length; i++) acc += m.parts[i]! * clip(parts[i]![j]!);
    out[j] = acc / m.total;
  }
  return out;
}

/** What {@link writeFoldedDelta} mixes. */
export interface FoldedDeltaInput {
  /** The fresh work: the task's global model and the trained local model. */
  readonly globalPath: string;
  readonly localPath: string;
  readonly tensors: readonly TaskTensor[];
  readonly plan: FoldPlan;
  readonly clip: number | undefined;
  /** Where the folded delta goes (F32, the task's tensors). */
  readonly outPath: string;
  readonly signal: AbortSignal;
}

/** Writes the upload's one delta, the plan's mix of the fresh delta and the folded parts, chunk by chunk. */
export async function writeFoldedDelta(i: FoldedDeltaInput): Promise<void> {
  const sources: FileSource[] = [];
  const open = async (p: string): Promise<SafetensorsFile> => {
    const src = await openFileSource(p);
    sources.push(src);
    return openSafetensors(src);
  };
  try {
    const global = await open(i.globalPath);
    const local = await open(i.localPath);
    const parts: SafetensorsFile[] = [];
    for (const p of i.plan.parts) parts.push(await open(p.part.deltaPath));
    for (const t of i.tensors) {
      const shape = t.shape.join();
      const bad = [local, ...parts].findIndex((f) => f.tensors.find((x) => x.name === t.name)?.shape.join() !== shape);
      if (bad >= 0) throw new SiteAgentError('MODEL_INVALID', `${bad === 0 ? 'the local model' : `kept part ${i.plan.parts[bad - 1]!.part.baseModelSha256.slice(0, 12)}`} has no tensor ${t.name} of shape [${shape}]`, false);
    }
    const m: MixWeights = { fresh: i.plan.fresh, parts: i.plan.parts.map((p) => p.count), total: i.plan.weight, clip: i.clip };
    await writeF32File(i.outPath, i.tensors, async (name, first, n) => {
      const g = await global.readF32(name, first, n);
      const fresh = await local.readF32(name, first, n);
      for (let j = 0; j < n; j++) fresh[j] = fresh[j]! - g[j]!;
      const kept = await Promise.all(parts.map((f) => f.readF32(name, first, n)));
      return mixDeltas(new Float32Array(n), fresh, kept, m);
    }, i.signal);
  } finally {
    for (const s of sources) await s.close();
  }
}
