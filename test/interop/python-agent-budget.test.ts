/**
 * Issue 16's open protocol, from the second implementation's side: the Python site agent of
 * test/interop/ (written from docs/protocol.md, "Bases, staleness and folded work" and "The trainer
 * contract") in a secure, token-budgeted run weighed by tokens, beside two TypeScript SiteAgents.
 * Rounds: (1) all take part; (2) the Python agent trains but misses the round's window — it keeps
 * the work and leaves the attempt (ReportFailure); (3) it folds that work, one round stale, into
 * its upload: one mixed delta of weight W = F + min(S, maxSiteWeight − F), masked with round 3's
 * keys; (4) it folds the same work once more (test behaviour), the coordinator refuses it
 * (ALREADY_COUNTED), the agent drops it and sends its fresh delta alone, which counts in round 4 (a
 * refused folded part refuses that stream only, not the site). The test computes each committed
 * update itself from the agents' dumps — the folded one from the dumped parts, with F, S_i, λ and W
 * computed here from the page's formulas, not read from the agent — and checks the journal's record
 * of the folded part, that the work counted once, the busy spans, receipts and `audit verify`.
 */
import { X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readStateDirTrail, verifyAudit } from '../../coordinator/audit/index.js';
import type { RoundInfo__Output } from '../../proto/index.js';
import { skipUnless } from '../helpers/components.js';
import type { RoundCommittedRecord } from '../../coordinator/state/records.js';
import { committedRecords, coordinatorStateDir, journalBodies, journalPath } from '../helpers/faults.js';
import { expectLogs, type LogLine } from '../helpers/logger.js';
import { siteCertFiles } from '../helpers/raw-site.js';
import { expectCommittedMean, secureRun } from '../helpers/secure-federation.js';
import { InteropFederation, type PythonAgent } from './harness.js';
import { INTEROP_DIR, PYTHON, pythonInteropUnavailable } from './python.js';

const skip = skipUnless('python-interop', pythonInteropUnavailable());

const PY = 'site-3';
const ROUNDS = 4;
/** The Python agent trains round 2 but does not upload it; round 3 folds it; round 4 folds it again. */
const MISSED = 2;
const FOLDS = 3;
const REFOLDS = 4;
/** A token budget of 1,000 in batches of 4 × 32 tokens: 8 steps, 1,024 tokens (< 1,000 + 128). */
const BUDGET = 1000;
const BATCH = 4;
const SEQ_LEN = 32;
/** maxSiteWeight: a folded part of one stale round (⌊1024 / 2⌋ = 512) must shrink to fit (λ < 1). */
const MAX_WEIGHT = 1400;
/** Tokens a TypeScript site declares in `round`: at least the budget, less than one batch more. */
const tsTokens = (site: string) => (round: number) => BUDGET + 10 * Number(site.replace(/\D+/g, '')) + round;

/** The page's fold arithmetic, written out here: ⌊k/(1+s)⌋, W = F + min(S, M − F), λ, c_i = λ·S_i. */
function foldWeights(fresh: number, parts: readonly { count: number; staleness: number }[], max: number): { w: number; f: number; s: number[]; lambda: number; c: number[] } {
  const f = fresh;
  const s = parts.map((p) => Math.floor(p.count / (1 + p.staleness)));
  const total = s.reduce((a, b) => a + b, 0);
  const taken = Math.min(total, max - f);
  const lambda = total === 0 ? 1 : taken / total;
  return { w: f + taken, f, s, lambda, c: s.map((x) => x * lambda) };
}

/** Δ = f32((F·clip(Δ_f) + Σ c_i·clip(Δ_i)) / W), in float64. */
function mixed(fresh: Float32Array, parts: readonly Float32Array[], f: number, c: readonly number[], w: number, clip: number): Float32Array {
  const cl = (x: number): number => Math.max(-clip, Math.min(clip, x));
  const out = new Float32Array(fresh.length);
  for (let j = 0; j < out.length; j++) {
    let acc = f * cl(fresh[j]!);
    parts.forEach((p, i) => (acc += c[i]! * cl(p[j]!)));
    out[j] = acc / w;
  }
  return out;
}

describe.skipIf(skip)('the Python site agent in a token-budgeted secure run: missed work kept, folded once, refused when folded again', () => {
  let f: InteropFederation;
  let python: PythonAgent;
  let committed: RoundInfo__Output[] = [];
  let journal: RoundCommittedRecord[] = [];

  beforeAll(async () => {
    f = await InteropFederation.start(
      3,
      secureRun({
        rounds: ROUNDS,
        minSites: 2,
        evaluate: true,
        weighting: 'tokens',
        maxSiteWeight: MAX_WEIGHT,
        train: { budget: { tokens: BUDGET }, batch_size: BATCH, seq_len: SEQ_LEN, lr: 0.01 },
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await f?.close();
  });

  it('runs four secure rounds to the end, receipts included, with only the declared warnings', async () => {
    const py = (round: number) => (l: LogLine): boolean => l['site'] === PY && l['round'] === round;
    expectLogs(
      // Round 2: the Python agent leaves the attempt having trained (ReportFailure DEADLINE_PASSED).
      (l) => l.msg === 'round failed at this site' && py(MISSED)(l),
      (l) => l.msg === 'site dropped from round' && py(MISSED)(l),
      // Round 4: the folded part counted in round 3 is refused (that stream only).
      (l) => l.msg === 'upload refused' && l['site'] === PY && (l['err'] as { code?: string } | undefined)?.code === 'ALREADY_COUNTED',
    );
    const started = Date.now();
    f.startTsAgent('site-1', undefined, tsTokens('site-1'));
    f.startTsAgent('site-2', undefined, tsTokens('site-2'));
    python = f.startPython(PY, ['--miss-window', String(MISSED), '--refold', String(REFOLDS), '--min-stripe-bytes', String(256 * 1024)]);
    committed = await f.completed(ROUNDS);
    journal = await committedRecords(f.fed);
    process.stdout.write(`python interop: ${ROUNDS} token-budgeted secure rounds with a fold in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  }, 90_000);

  it('trained to the token budget each round (at least T tokens, less than T plus one batch) and reported its busy span and busy time from its step times', () => {
    for (let r = 1; r <= ROUNDS; r++) {
      const d = python.round(r);
      expect(d.tokens, `round ${r}`).toBeGreaterThanOrEqual(BUDGET);
      expect(d.tokens, `round ${r}`).toBeLessThan(BUDGET + BATCH * SEQ_LEN);
      expect(d).toMatchObject({ steps: Math.ceil(BUDGET / (BATCH * SEQ_LEN)), samples: d.steps * BATCH, tokens: d.steps * BATCH * SEQ_LEN });
      expect(d.stepTs).toHaveLength(d.steps);
      expect(d.trainFinishedMs).toBe(d.stepTs.at(-1));
      expect(d.trainStartedMs).toBeLessThanOrEqual(d.stepTs[0]!);
      expect([...d.stepTs].sort((a, b) => a - b)).toEqual(d.stepTs);
      // Steps are sleeps back to back: busy nearly all of the span, never (beyond rounding to ms) more.
      expect(d.busyMs, `round ${r}`).toBeGreaterThan(0);
      expect(d.busyMs, `round ${r}`).toBeLessThanOrEqual(d.trainFinishedMs - d.trainStartedMs + 1);
    }
    for (const c of journal) {
      const p = c.participants.find((x) => x.site === PY);
      if (!p) continue;
      const d = python.round(c.round);
      expect(p, `round ${c.round}`).toMatchObject({ tokens: d.tokens, samples: d.samples, steps: d.steps, trainStartedMs: d.trainStartedMs, trainFinishedMs: d.trainFinishedMs, busyMs: d.busyMs, appliedStaleness: 0 });
    }
  });

  it('missed round 2: trained from round 1\'s model, kept the work and left the attempt instead of uploading', () => {
    const ev = python.events();
    const r2 = ev.filter((e) => e.round === MISSED);
    expect(r2.map((e) => e.event)).toEqual(expect.arrayContaining(['advertised', 'shared', 'kept', 'failure']));
    expect(r2.map((e) => e.event)).not.toContain('uploading');
    expect(r2.find((e) => e.event === 'failure')).toMatchObject({ code: 'DEADLINE_PASSED' });
    const c2 = journal.find((c) => c.round === MISSED)!;
    expect(c2.participants.map((p) => p.site).sort()).toEqual(['site-1', 'site-2']);
    expect(c2.dropped).toEqual([PY]);
    expect(python.round(MISSED)).toMatchObject({ base: c2.parentSha256, modelRound: 1 });
  });

  it('commits, each round, the weighted mean the test computes itself — round 3 with the Python site\'s mixed delta of its fresh and its kept work', async () => {
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3, 4]);
    const byRound = new Map(journal.map((c) => [c.round, c]));
    for (const info of committed) {
      const round = Number(info.round);
      const deltas = new Map<string, Float32Array>();
      const counts = new Map<string, number>();
      for (const site of info.participants) {
        if (site !== PY) {
          deltas.set(site, f.runners.get(site)!.deltas.get(round)!);
          counts.set(site, tsTokens(site)(round));
          continue;
        }
        const fresh = python.round(round);
        expect(fresh.base, 'the fresh part trained from the round\'s model').toBe(info.parentSha256);
        if (round !== FOLDS) {
          deltas.set(site, fresh.delta);
          counts.set(site, fresh.tokens);
          continue;
        }
        // The kept part: round 2's work, trained from the model round 1 committed; its staleness is
        // model_round (2) − the round that committed its base (1), read from the journal.
        const kept = python.round(MISSED);
        const baseRound = journal.find((c) => c.modelSha256 === kept.base)!.round;
        const w = foldWeights(fresh.tokens, [{ count: kept.tokens, staleness: round - 1 - baseRound }], MAX_WEIGHT);
        expect(w.lambda, 'the folded part shrinks to fit maxSiteWeight').toBeLessThan(1);
        deltas.set(site, mixed(fresh.delta, [kept.delta], w.f, w.c, w.w, 1));
        counts.set(site, w.w);
      }
      expect(byRound.get(round)!.participants.map((p) => [p.site, p.weight]).sort()).toEqual([...counts].sort());
      await expectCommittedMean(f.fed, info, deltas, counts, undefined, MAX_WEIGHT);
    }
  });

  it("journals the folded part in round 3's participant record: round 1's model, staleness 1, its discounted count scaled by λ", () => {
    const c3 = journal.find((c) => c.round === FOLDS)!;
    const c1 = journal.find((c) => c.round === 1)!;
    const p = c3.participants.find((x) => x.site === PY)!;
    const kept = python.round(MISSED);
    const fresh = python.round(FOLDS);
    const w = foldWeights(fresh.tokens, [{ count: kept.tokens, staleness: 1 }], MAX_WEIGHT);
    expect(p).toMatchObject({ baseModelSha256: c3.parentSha256, staleness: 0, tokens: fresh.tokens, weight: w.w });
    expect(p.folded).toEqual([{ baseModelSha256: c1.modelSha256, staleness: 1, samples: kept.samples, tokens: kept.tokens, steps: kept.steps, count: w.c[0] }]);
    expect(w.s[0]).toBe(Math.floor(kept.tokens / 2));
  });

  it('counted that work once: folded again in round 4 it was refused (ALREADY_COUNTED), and the agent dropped it and sent its fresh delta alone', () => {
    const base = python.round(MISSED).base;
    const counted = journal.flatMap((c) =>
      c.participants
        .filter((p) => p.site === PY)
        .flatMap((p) => [...((p.baseModelSha256 ?? c.parentSha256) === base ? [`${c.round}:fresh`] : []), ...(p.folded ?? []).filter((x) => x.baseModelSha256 === base).map(() => `${c.round}:folded`)]),
    );
    expect(counted).toEqual([`${FOLDS}:folded`]);
    const ev = python.events().filter((e) => e.round === REFOLDS);
    const summary = JSON.stringify(ev.map((e) => [e.event, e['code'] ?? e['folded'] ?? '']));
    expect(ev.find((e) => e.event === 'refolding'), summary).toMatchObject({ bases: [base] });
    expect(ev.find((e) => e.event === 'fold-refused'), summary).toMatchObject({ code: 'ALREADY_COUNTED' });
    // It asked to upload the delta with the part folded in (AdmitUpload refused the header); the
    // upload after the refusal carried the fresh delta alone.
    expect(ev.filter((e) => e.event === 'admitting').map((e) => e['folded']), summary).toEqual([1, 0]);
    expect(ev.filter((e) => e.event === 'uploading').map((e) => e['folded']), summary).toEqual([0]);
    expect(python.events().filter((e) => e.event === 'kept-dropped' && e['base'] === base).map((e) => String(e['why'])), summary).toEqual([expect.stringContaining('ALREADY_COUNTED')]);
    expect(journal.find((c) => c.round === REFOLDS)?.participants.every((p) => (p.folded ?? []).length === 0)).toBe(true);
  });

  // A refused folded part refuses that stream only (docs/protocol.md, "Bases, staleness and folded
  // work"): the site stays in the attempt and its fresh delta, sent alone, counts in round 4.
  it('stayed in round 4 after the refusal: its fresh delta alone was committed, nothing of it kept', () => {
    const c4 = journal.find((c) => c.round === REFOLDS)!;
    expect(c4.participants.map((p) => p.site).sort()).toEqual(['site-1', 'site-2', PY]);
    expect(c4.dropped).toEqual([]);
    const p = c4.participants.find((x) => x.site === PY)!;
    expect(p).toMatchObject({ baseModelSha256: c4.parentSha256, staleness: 0, tokens: python.round(REFOLDS).tokens });
    expect(p.folded ?? []).toEqual([]);
    const ev = python.events().filter((e) => e.round === REFOLDS);
    expect(ev.map((e) => e.event)).toContain('uploaded');
    expect(ev.map((e) => e.event)).not.toContain('kept');
  });

  it('sent a receipt of every round it took part in, and audit verify passes with none missing', async () => {
    const receipts = (await journalBodies(journalPath(f.fed), 'receipt')).filter((b) => b['site'] === PY).map((b) => b['round']);
    expect(receipts.sort()).toEqual(journal.filter((c) => c.participants.some((p) => p.site === PY)).map((c) => c.round));
    const ca = new X509Certificate(readFileSync(siteCertFiles(f.fed, PY).ca, 'utf8'));
    const report = verifyAudit(await readStateDirTrail(coordinatorStateDir(f.fed)), { ca: [ca], requireReceipts: true });
    expect(report).toMatchObject({ ok: true, committedRounds: ROUNDS, missingReceipts: [] });
  });
});

describe.skipIf(skip)("the Python agent's stand-in trainer and fold arithmetic", () => {
  it('a time budget starts no step after S seconds; a malformed budget is SPEC_INVALID; the fold weights as the page defines them', () => {
    const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(INTEROP_DIR)})
from fedhpc_site import Trainer
from fedhpc_secure import Refused
from fedhpc_fold import upload_weight, plan_fold
t = Trainer(7, 100, 0.01)
_, c = t.train(1, 64, {"budget": {"seconds": 0.2}, "batch_size": 2, "seq_len": 8})
bad = []
for b in [{"seconds": 0}, {"tokens": 1.5}, {"tokens": 0}, {"tokens": 5, "seconds": 1}, "5"]:
    try:
        t.train(1, 8, {"budget": b})
    except Refused as e:
        bad.append(e.code)
_, capped = t.train(1, 8, {"budget": {"tokens": 1000}, "batch_size": 2, "seq_len": 8, "max_steps": 3})
parts = [{"runId": "r", "base": b, "baseRound": r, "tokens": 100, "samples": 10, "steps": 1} for b, r in [("b0", 0), ("b1", 1), ("b2", 2), ("b3", 3)]]
chosen, dropped = plan_fold("r", "b3", 3, 2, parts, "tokens")
print(json.dumps({"steps": c["steps"], "span": c["trainFinishedMs"] - c["trainStartedMs"], "tokens": c["tokens"], "bad": bad, "capped": capped["steps"],
  "w": [upload_weight((90, 0), [(100, 1), (100, 2)], 200), upload_weight((200, 0), [(100, 1)], 200)],
  "chosen": [[p["base"], s] for p, s in chosen], "dropped": [p["base"] for p, _ in dropped]}))
`;
    const r = spawnSync(PYTHON, ['-c', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { steps: number; span: number; tokens: number; bad: string[]; capped: number; w: unknown[]; chosen: unknown[]; dropped: string[] };
    // 10 ms steps for 0.2 s: the step running at S finishes, so the span passes S by less than a step.
    expect(out.span).toBeGreaterThanOrEqual(200);
    expect(out.span).toBeLessThan(200 + 100);
    expect(out.tokens).toBe(out.steps * 2 * 8);
    expect(out.bad).toEqual(['SPEC_INVALID', 'SPEC_INVALID', 'SPEC_INVALID', 'SPEC_INVALID', 'SPEC_INVALID']);
    expect(out.capped).toBe(3);
    // F = 90, S = ⌊100/2⌋ + ⌊100/3⌋ = 83, room 110: λ = 1, W = 173. F = M: no room, λ = 0.
    expect(out.w).toEqual([
      [173, 90, [50, 33], 1],
      [200, 200, [50], 0],
    ]);
    // Task of model_round 3 (model b3), max_staleness 2: b3 superseded, b0 three rounds old; b2, b1 freshest first.
    expect(out.chosen).toEqual([
      ['b2', 1],
      ['b1', 2],
    ]);
    expect(out.dropped.sort()).toEqual(['b0', 'b3']);
  });
});
