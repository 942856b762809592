import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pyJson, type Refused } from './round-dir-python.js';

// The persistent session's side of deploy/slurm/fedhpc_round_dir.py (contract version 3,
// docs/protocol.md "The persistent trainer"), run on its own: standard library only, no torch, so
// these run wherever a python3 is. torch-persistent.test.ts drives the reference trainer through it.

const work = mkdtempSync(join(tmpdir(), 'fedhpc-session-dir-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));


const SESSION_SPEC = {
  version: 3,
  mode: 'persistent',
  run_id: 'run-1',
  seed: 7,
  budget: { tokens: 1000 },
  overlap: { alpha: 0.5 },
  train: { lr: 3e-4, batch_size: 8, seq_len: 32 },
  data: { train_tokens: 'tokens.u32' },
};

describe('fedhpc_round_dir.py: the persistent session (contract version 3)', () => {
  it('validate_session_spec reads a version-3 spec (a round\'s fields, no round, attempt or global) and refuses what it cannot honour with 64', () => {
    const out = pyJson<{ ok: Record<string, unknown>; contract: number; refused: (Refused | null)[] }>(`
spec = json.loads(sys.argv[1])
s = rd.validate_session_spec(spec, "/session")
ok = {k: getattr(s, k) for k in ("version", "run_id", "alpha", "round", "global_sha256", "budget_tokens", "planned_steps", "tokens_path", "max_steps")}
ok["default_alpha"] = rd.validate_session_spec({**spec, "overlap": {}}, "/s").alpha
def edit(**kw):
    return lambda: rd.validate_session_spec({**spec, **kw}, "/s")
no_budget = {k: v for k, v in spec.items() if k != "budget"}
cases = [edit(version=2), edit(mode="round"), edit(round=3), edit(attempt=0), edit(global_sha256="a" * 64),
         lambda: rd.validate_session_spec(no_budget, "/s"), edit(overlap={"alpha": 0}), edit(overlap={"alpha": 1.5}),
         edit(overlap=[1]), edit(run_id=""), lambda: rd.validate_spec(spec, "/s"), lambda: rd.validate_spec({**spec, "mode": None}, "/s")]
print(json.dumps({"ok": ok, "contract": rd.CONTRACT_VERSION, "refused": [refusal(c) for c in cases]}))
`, [JSON.stringify(SESSION_SPEC)]);
    expect(out.contract).toBe(3);
    // 1000 tokens at 8 x 32 a step: a sync carries 4 steps.
    expect(out.ok).toEqual({ version: 3, run_id: 'run-1', alpha: 0.5, round: null, global_sha256: null, budget_tokens: 1000, planned_steps: 4, tokens_path: '/session/tokens.u32', max_steps: null, default_alpha: 1 });
    const expected = [
      /spec\.version/,
      /spec\.mode/,
      /spec\.round belongs in a sync's READY\.json/,
      /spec\.attempt belongs/,
      /spec\.global_sha256 belongs/,
      /a persistent session needs spec\.budget/,
      /overlap\.alpha/,
      /overlap\.alpha/,
      /spec\.overlap must be a JSON object/,
      /spec\.run_id/,
      /persistent session .*--session-dir, not --round-dir/, // a round directory never takes a session's spec
      /spec\.version/,
    ];
    out.refused.forEach((r, i) => {
      expect(r?.code, `case ${i}`).toBe(64);
      expect(r?.message).toMatch(expected[i]!);
    });
  });

  it('next_ready takes the lowest <round>.<attempt> above the last snapshot whose READY.json is in, in numeric order, and refuses a malformed one', () => {
    const dir = join(work, 'ready');
    const ready = (name: string, body?: unknown): void => {
      mkdirSync(join(dir, 'syncs', name), { recursive: true });
      if (body !== undefined) writeFileSync(join(dir, 'syncs', name, 'READY.json'), JSON.stringify(body));
    };
    const r = (round: number, attempt: number) => ({ round, attempt, modelRound: round - 1, globalSha256: 'b'.repeat(64) });
    ready('2.0', r(2, 0));
    ready('2.1'); // laid out, READY.json not renamed in yet
    ready('9.0', r(9, 0));
    ready('10.0', r(10, 0));
    ready('03.0', r(3, 0)); // not a sync's name: ignored
    ready('tmp');
    const out = pyJson<{ picks: ([number, number] | null)[]; empty: null; refused: (Refused | null)[] }>(`
d = sys.argv[1]
def pick(after):
    found = rd.next_ready(d, after)
    return list(found[0]) if found else None
picks = [pick(None), pick((2, 0)), pick([2, 1]), pick((9, 0)), pick((10, 0))]
bad = os.path.join(d, "bad")
os.makedirs(os.path.join(bad, "syncs", "4.0"))
os.makedirs(os.path.join(bad, "syncs", "5.0"))
def write(name, text):
    with open(os.path.join(bad, "syncs", name, "READY.json"), "w") as f:
        f.write(text)
write("4.0", json.dumps({"round": 5, "attempt": 0, "modelRound": 4, "globalSha256": "b" * 64}))
write("5.0", "{")
first = refusal(lambda: rd.next_ready(bad, None))
write("4.0", json.dumps({"round": 4, "attempt": 0, "modelRound": 3, "globalSha256": "B" * 64}))
second = refusal(lambda: rd.next_ready(bad, None))
third = refusal(lambda: rd.next_ready(bad, (4, 0)))
print(json.dumps({"picks": picks, "empty": rd.next_ready(os.path.join(d, "none"), None), "refused": [first, second, third]}))
`, [dir]);
    expect(out.picks).toEqual([[2, 0], [9, 0], [9, 0], [10, 0], null]);
    expect(out.empty).toBe(null);
    const expected = [/names round 5 attempt 0, not its directory's/, /globalSha256/, /5\.0\/READY\.json/];
    out.refused.forEach((refused, i) => {
      expect(refused?.code).toBe(64);
      expect(refused?.message).toMatch(expected[i]!);
    });
  });

  it('check_sync_global refuses (65) a global that is missing or not READY\'s hash; the model config is the session\'s, else the first sync\'s; STOP is a file', () => {
    const dir = join(work, 'global');
    mkdirSync(join(dir, 'syncs', '1.0', 'global'), { recursive: true });
    writeFileSync(join(dir, 'syncs', '1.0', 'global', 'model.safetensors'), 'weights');
    const out = pyJson<{ ok: string; refused: (Refused | null)[]; stop: boolean[]; configs: string[] }>(`
import hashlib
d = sys.argv[1]
good = {"globalSha256": hashlib.sha256(b"weights").hexdigest()}
stop = [rd.stop_requested(d)]
open(os.path.join(d, "STOP"), "w").close()
stop.append(rd.stop_requested(d))
configs = [rd.session_config_path(d, (1, 0))]
open(os.path.join(d, "config.json"), "w").close()
configs.append(rd.session_config_path(d, (1, 0)))
print(json.dumps({"ok": rd.check_sync_global(d, (1, 0), good), "stop": stop, "configs": configs,
                  "refused": [refusal(lambda: rd.check_sync_global(d, (1, 0), {"globalSha256": "0" * 64})),
                              refusal(lambda: rd.check_sync_global(d, (2, 0), good))]}))
`, [dir]);
    expect(out.ok).toBe(join(dir, 'syncs', '1.0', 'global', 'model.safetensors'));
    expect(out.stop).toEqual([false, true]);
    expect(out.configs).toEqual([join(dir, 'syncs', '1.0', 'global', 'config.json'), join(dir, 'config.json')]);
    for (const r of out.refused) expect(r).toMatchObject({ code: 65, message: expect.stringMatching(/differs from READY\.json's globalSha256/) });
  });

  it('SyncTally: the snapshot is due once the global is applied and the budget is spent; DONE.json carries the sync\'s steps, staleness and busy time; progress lines name the sync', () => {
    const dir = join(work, 'tally');
    mkdirSync(join(dir, 'syncs', '3.1'), { recursive: true });
    const out = pyJson<{ due: boolean[]; timeDue: boolean[]; done: Record<string, unknown>; written: Record<string, unknown>; lines: Record<string, unknown>[] }>(`
d = sys.argv[1]
spec = json.loads(sys.argv[2])
s = rd.validate_session_spec(spec, d)  # 4 steps a sync
t = rd.SyncTally(first_step=11, cursor=80, wraps=0, started_ms=1000)
due = []
for i in range(6):
    if i == 5:
        t.applied((3, 1), {"round": 3, "attempt": 1, "modelRound": 2, "globalSha256": "c" * 64})
    due.append(t.due(s, 0))
    if i < 5:
        t.step_done(1.0 + i, 1000 + 100 * i + 10, 1000 + 100 * i + 60)
timed = rd.validate_session_spec({**spec, "budget": {"seconds": 2}}, d)
u = rd.SyncTally(first_step=1, cursor=0, wraps=0)
u.applied((1, 0), {"round": 1, "attempt": 0, "modelRound": 0, "globalSha256": "c" * 64})
time_due = [u.due(timed, 10**9)]  # no step yet: a sync always takes its first
u.step_done(2.0, 5000, 5500)
time_due += [u.due(timed, 6999), u.due(timed, 7000)]
done = t.done(s, {"path": "tokens.u32"}, "d" * 64, "c" * 64, {"nextCursor": 120})
rd.write_sync_done(d, (3, 1), done)
with open(os.path.join(d, "syncs", "3.1", "DONE.json")) as f:
    written = json.load(f)
path = os.path.join(d, "progress.jsonl")
rd.append_sync_progress(path, 16, 0.5, 8, 32, 1234, 50, (3, 1), 2)
rd.append_sync_progress(path, 17, float("nan"), 8, 32, 1290, 56, None, 2)
with open(path) as f:
    lines = [json.loads(l) for l in f]
print(json.dumps({"due": due, "timeDue": time_due, "done": done, "written": written, "lines": lines}))
`, [dir, JSON.stringify(SESSION_SPEC)]);
    // Not due before the global is applied, however far past the budget (4 steps) it has trained.
    expect(out.due).toEqual([false, false, false, false, false, true]);
    // A time budget counts from the first step's start when no snapshot ended before.
    expect(out.timeDue).toEqual([false, false, true]);
    expect(out.done).toEqual({
      status: 'done',
      round: 3,
      attempt: 1,
      steps: 5,
      tokens: 5 * 256,
      samples: 40,
      trainLoss: 3,
      trainStartedMs: 1000,
      trainFinishedMs: 1460,
      dataManifestSha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      dataManifest: { path: 'tokens.u32' },
      outSha256: 'd'.repeat(64),
      outDtype: 'F32',
      baseSha256: 'c'.repeat(64),
      modelRound: 2,
      appliedStaleness: 5,
      busyMs: 250,
      firstStep: 11,
      lastStep: 15,
      cursorStart: 80,
      wrapsStart: 0,
      nextCursor: 120,
    });
    expect(out.written).toEqual(out.done);
    expect(out.lines).toEqual([
      { step: 16, loss: 0.5, tokens: 16 * 256, ts: 1234, stepMs: 50, sync: '3.1', appliedGlobalRound: 2 },
      { step: 17, loss: null, tokens: 17 * 256, ts: 1290, stepMs: 56, sync: null, appliedGlobalRound: 2 },
    ]);
  });

  it('SyncTally.continued: a sync on the same base (a new attempt) counts from the last sync\'s start, in the process or from its DONE.json after a restart', () => {
    const dir = join(work, 'continued');
    mkdirSync(dir, { recursive: true });
    const out = pyJson<{ live: Record<string, unknown>; restarted: Record<string, unknown>; old: Record<string, unknown> }>(`
s = rd.validate_session_spec(json.loads(sys.argv[2]), sys.argv[1])
ready = {"round": 3, "attempt": 0, "modelRound": 2, "globalSha256": "c" * 64}
last = rd.SyncTally(first_step=11, cursor=80, wraps=0, started_ms=1000)
for i in range(2):
    last.step_done(1.0, 1000 + 100 * i, 1050 + 100 * i)
last.applied((3, 0), ready)
for i in range(2, 4):
    last.step_done(3.0, 1000 + 100 * i, 1050 + 100 * i)
def again(prev):
    t = rd.SyncTally(first_step=15, cursor=112, wraps=0, started_ms=1400)
    t.step_done(5.0, 1400, 1450)
    t.continued((3, 1), dict(ready, attempt=1), prev)
    return t.done(s, {}, "d" * 64, "c" * 64)
record = last.done(s, {}, "e" * 64, "c" * 64)
old = {k: v for k, v in record.items() if k not in ("cursorStart", "wrapsStart")}
print(json.dumps({"live": again(last), "restarted": again(record), "old": again(old)}))
`, [dir, JSON.stringify(SESSION_SPEC)]);
    const merged = { attempt: 1, steps: 5, trainLoss: 2.6, trainStartedMs: 1000, trainFinishedMs: 1450, appliedStaleness: 2, busyMs: 250, firstStep: 11, lastStep: 15, cursorStart: 80 };
    expect(out.live).toMatchObject(merged);
    expect(out.restarted).toMatchObject(merged);
    // A DONE.json of an older trainer (no cursorStart) cannot be continued: the sync counts its own step.
    expect(out.old).toMatchObject({ steps: 1, firstStep: 15, appliedStaleness: 1 });
  });
});
