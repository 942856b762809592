import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { TORCH_PYTHON, torchAvailable } from './require-torch.js';

// The NeMo recipe's persistent mode (deploy/slurm/nemo_shard.py --session-dir, contract version 3)
// cannot run here: no GPU, no NeMo, no Megatron. Its loop, SessionControl, is framework-neutral, so
// it runs here under a plain-PyTorch stand-in for the framework (DRIVER below): the decisions at each
// step boundary, the correction θ + α·(g − θₛ), the snapshot's out/, state/ and DONE.json, the
// restart, STOP and signals, the child processes NeMo 2.0's conversions take. What the stand-in
// replaces (Megatron-Bridge's and NeMo's loaders, exporters, checkpoints and loops) stays
// UNVERIFIED: docs/nemo.md, "Overlapped rounds".
const SLURM_DIR = fileURLToPath(new URL('../../../deploy/slurm/', import.meta.url));
const RUN_TIMEOUT_MS = 60_000;
const torch = torchAvailable();

const DRIVER = `
# A plain-PyTorch stand-in for the framework under nemo_shard.py's SessionControl (no NeMo, no
# Megatron): each step adds 0.001 x step to every parameter. With children=True it takes NeMo
# 2.0's shape: the first global is loaded before training, later ones are converted and snapshots
# exported by child processes, each finishing within the step after it starts.
import argparse, json, os, subprocess, sys
import torch
sys.path.insert(0, os.environ["SLURM_DIR"])
import nemo_shard as ns
from fedhpc_round_dir import check_safetensors_header, sync_dir, sync_name, tensor_shapes

EXPORT = """
import sys, torch
sys.path.insert(0, sys.argv[1])
import nemo_shard as ns
s = ns.open_session(sys.argv[2], config_from_state=True)
writer = ns.OutWriter(s, sys.argv[4])
for name, t in torch.load(sys.argv[3]).items():
    writer.put(name, t)
ns.write_json_atomic(sys.argv[5], {"outSha256": writer.finish()})
"""


def read_st(path, shapes):
    start, layout = check_safetensors_header(path, shapes)
    out = {}
    with open(path, "rb") as f:
        for name, shape in shapes.items():
            _, begin, end = layout[name]
            f.seek(start + begin)
            out[name] = torch.frombuffer(bytearray(f.read(end - begin)), dtype=torch.float32).reshape(shape).clone()
    return out


def global_path(s, sync):
    return os.path.join(sync_dir(s.round_dir, sync), "global", "model.safetensors")


class StandIn(ns.Hands):
    runner = "stand-in"

    def __init__(self, s, p, w, children):
        self.s, self.p, self.w, self.children, self.first_loaded = s, p, w, children, children
        self.ended, self.reloads, self.kids = False, 0, []

    def named_params(self):
        return list(self.w.items())

    def converted(self, sync):
        return os.path.join(self.p.imports, sync_name(sync))

    def prepare_global(self, sync):
        if not self.children:
            return None
        os.makedirs(self.converted(sync), exist_ok=True)
        kid = subprocess.Popen([sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
                                global_path(self.s, sync), os.path.join(self.converted(sync), "model.safetensors")])
        self.kids.append(kid)
        return kid

    def global_scratch(self, sync):
        return [self.converted(sync)] if self.children else []

    def load_global(self, sync):
        path = os.path.join(self.converted(sync), "model.safetensors") if self.children else global_path(self.s, sync)
        g = read_st(path, tensor_shapes(self.s.config))
        with torch.no_grad():
            for name, t in self.w.items():
                t.copy_(g[name])

    def reload_main(self):
        self.reloads += 1

    def snapshot(self, step, sync, out_path):
        os.makedirs(self.p.ckpt, exist_ok=True)
        ckpt = os.path.join(self.p.ckpt, f"step-{step}.pt")
        torch.save({name: t.clone() for name, t in self.w.items()}, ckpt)
        if self.children:
            os.makedirs(self.p.exports, exist_ok=True)
            kid = subprocess.Popen([sys.executable, "-c", EXPORT, os.environ["SLURM_DIR"], self.s.round_dir, ckpt,
                                    out_path, ns.export_result(self.p, sync)])
            self.kids.append(kid)
            return ckpt, None, kid
        writer = ns.OutWriter(self.s, out_path)
        for name, t in reversed(list(self.w.items())):  # an exporter's own order, not the file's
            writer.put(name, t)
        return ckpt, writer.finish(), None

    def snapshot_done(self, commit, wait):
        if not self.children:
            assert os.path.exists(commit.checkpoint), "the framework saved the snapshot's checkpoint"
            return commit.out_sha
        code = commit.child.wait() if wait else commit.child.poll()
        if code is None:
            return None
        assert code == 0, code
        with open(ns.export_result(self.p, commit.sync)) as f:
            return json.load(f)["outSha256"]

    def drop_checkpoints(self, keep):
        for name in os.listdir(self.p.ckpt):
            if os.path.join(self.p.ckpt, name) != keep:
                os.remove(os.path.join(self.p.ckpt, name))

    def end_loop(self):
        self.ended = True


def offer(d, sync, value, model_round, sha=None):
    """The agent's side of a sync: global/ (every weight value), then READY.json renamed in."""
    s = ns.open_session(d)
    path = os.path.join(sync_dir(d, sync), "global", "model.safetensors")
    writer = ns.OutWriter(argparse.Namespace(config=s.config, output_dtype="F32"), path)
    for name, shape in tensor_shapes(s.config).items():
        writer.put(name, torch.full(shape, value))
    digest = writer.finish()
    ns.write_json_atomic(os.path.join(sync_dir(d, sync), "READY.json"),
                         {"round": sync[0], "attempt": sync[1], "modelRound": model_round, "globalSha256": sha or digest})


def run(d, events, children=False):
    """One trainer process: run_session with the stand-in as the framework's loop, for at most
    nemo.session_steps steps; events[step](stop) runs during that step (the agent's writes, a signal)."""
    stop, seen = argparse.Namespace(signal=None), {}

    def train(s, p, stop, first):
        shapes = tensor_shapes(s.config)
        if s.state:  # the framework resumes from the committed checkpoint
            w, step = torch.load(s.state["checkpoint"]), s.state["step"]
        else:
            w, step = {name: torch.zeros(shape) for name, shape in shapes.items()}, 0
        hands = StandIn(s, p, w, children)
        if children and not s.state:  # NeMo 2.0 loads the converted first global itself
            g = read_st(global_path(s, first[0]), shapes)
            for name in w:
                w[name].copy_(g[name])
        control = ns.SessionControl(s, p, stop, hands, True, first)
        control.start(step)
        while not hands.ended and step < s.session_steps:
            control.step_starts()
            step += 1
            with torch.no_grad():
                for t in w.values():
                    t.add_(0.001 * step)
            for kid in hands.kids:
                kid.wait()
            events.get(step, lambda stop: None)(stop)
            control.step_ended(step, 1.0 / step)
        seen.update(steps=step, reloads=hands.reloads)
        return control.finish()

    try:
        code = ns.run_session(ns.open_session(d), children, stop, 5, train=train)
    except ns.Refusal as e:
        code = {"refused": e.code, "message": str(e)}
    return {"code": code, **seen}


def report(d):
    """The session directory: each sync's DONE.json and out/ (min and max over every weight),
    state/session.json, the checkpoints kept, progress.jsonl, what is left in state/imports."""
    s = ns.open_session(d)
    syncs = {}
    for name in sorted(os.listdir(os.path.join(d, "syncs"))):
        entry, where = {}, os.path.join(d, "syncs", name)
        if os.path.exists(os.path.join(where, "DONE.json")):
            with open(os.path.join(where, "DONE.json")) as f:
                entry["done"] = json.load(f)
        if os.path.exists(os.path.join(where, "out", "model.safetensors")):
            w = read_st(os.path.join(where, "out", "model.safetensors"), tensor_shapes(s.config)).values()
            entry["out"] = [min(t.min().item() for t in w), max(t.max().item() for t in w)]
        syncs[name] = entry
    state, ckpt = os.path.join(d, "state", "session.json"), os.path.join(d, "state", "mbridge_ckpt")
    with open(os.path.join(d, "progress.jsonl")) as f:
        progress = [json.loads(line) for line in f]
    return {"syncs": syncs, "state": json.load(open(state)) if os.path.exists(state) else None,
            "checkpoints": sorted(os.listdir(ckpt)) if os.path.isdir(ckpt) else [], "progress": progress,
            "imports": sorted(os.listdir(os.path.join(d, "state", "imports"))) if os.path.isdir(os.path.join(d, "state", "imports")) else []}


def touch(path):
    open(path, "w").close()


def scenario(name, d):
    if name == "overlap":  # alpha 0.5, two steps a sync
        offer(d, (1, 0), 0.1, 0)
        result = run(d, {4: lambda stop: offer(d, (2, 0), 0.2, 1), 6: lambda stop: offer(d, (2, 1), 0.2, 1),
                         7: lambda stop: touch(os.path.join(d, "STOP"))})
    elif name == "restart":  # the overlap session again, its last DONE.json lost
        os.remove(os.path.join(d, "STOP"))
        os.remove(os.path.join(d, "syncs", "2.1", "DONE.json"))
        offer(d, (3, 0), 0.3, 2)
        result = run(d, {9: lambda stop: setattr(stop, "signal", "SIGTERM")})
    elif name == "children":  # alpha 1, NeMo 2.0's shape
        offer(d, (1, 0), 0.1, 0)
        result = run(d, {3: lambda stop: offer(d, (2, 0), 0.2, 1), 5: lambda stop: touch(os.path.join(d, "STOP"))},
                     children=True)
    elif name == "refused":
        offer(d, (1, 0), 0.1, 0)
        result = run(d, {3: lambda stop: offer(d, (2, 0), 0.2, 1, sha="0" * 64)})
    elif name == "cap":  # nemo.session_steps 2
        offer(d, (1, 0), 0.1, 0)
        result = run(d, {})
    return {"run": result, "report": report(d)}


if __name__ == "__main__":
    print(json.dumps(scenario(sys.argv[1], sys.argv[2])))
`;

/** A tiny Llama (HF config.json fields). */
const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  hidden_size: 8,
  intermediate_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  vocab_size: 32,
  max_position_embeddings: 64,
};

/** 8 x 32 tokens a step: a token budget of 512 is two steps a sync. */
const SPEC = {
  version: 3,
  mode: 'persistent',
  run_id: 'run-1',
  seed: 7,
  budget: { tokens: 512 },
  overlap: { alpha: 0.5 },
  train: { lr: 3e-4, batch_size: 8, seq_len: 32 },
  data: { train_tokens: 'tokens.u32' },
};

interface SyncDone {
  round: number;
  attempt: number;
  steps: number;
  tokens: number;
  trainLoss: number;
  outSha256: string;
  baseSha256: string;
  modelRound: number;
  appliedStaleness: number;
  firstStep: number;
  lastStep: number;
  runner: string;
  dataManifest: { session_steps: number[] };
}

interface Report {
  run: { code: number | { refused: number; message: string }; steps?: number; reloads?: number };
  report: {
    syncs: Record<string, { done?: SyncDone; out?: [number, number] }>;
    state: { sync: number[]; step: number; base_sha256: string; checkpoint: string; done: SyncDone } | null;
    checkpoints: string[];
    progress: { step: number; sync: string | null; appliedGlobalRound: number | null; loss: number | null }[];
    imports: string[];
  };
}

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

describe.skipIf(!torch.ok)('nemo_shard.py --session-dir: its loop under a plain-PyTorch stand-in for the framework', () => {
  const work = mkdtempSync(join(tmpdir(), 'fedhpc-nemo-session-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const driver = join(work, 'driver.py');
  writeFileSync(driver, DRIVER);

  function session(name: string, edit: Record<string, unknown> = {}): string {
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'spec.json'), JSON.stringify({ ...SPEC, ...edit }));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG));
    writeFileSync(join(dir, 'tokens.u32'), new Uint8Array(new Uint32Array(4096).map((_, i) => (i * 7) % 32).buffer));
    return dir;
  }

  function scenario(name: string, dir: string): Report & { stderr: string } {
    const r = spawnSync(TORCH_PYTHON, [driver, name, dir], {
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
      env: { ...process.env, SLURM_DIR, PYTHONDONTWRITEBYTECODE: '1' },
    });
    expect(r.status, r.stderr).toBe(0);
    return { ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as Report), stderr: r.stderr };
  }

  /** Every weight of a sync's out/ is `value` (the stand-in keeps them uniform). */
  function expectOut(out: [number, number] | undefined, value: number): void {
    expect(out).toBeDefined();
    expect(out![0]).toBeCloseTo(value, 6);
    expect(out![1]).toBeCloseTo(value, 6);
  }

  const dir = session('overlap');
  const syncFile = (sync: string, ...rest: string[]): string => join(dir, 'syncs', sync, ...rest);

  it('applies the first global as the parameters and a later one as θ + α·(g − θₛ) at a step boundary, snapshots each sync once its budget is spent, counts a new attempt on the same base on from the last sync, and exits 0 on STOP', { timeout: RUN_TIMEOUT_MS }, () => {
    // Each step adds 0.001·step to every weight. Sync 1.0's global (0.1) comes first; 2.0's (0.2)
    // during step 4, 2.1 (the same global: a new attempt) during step 6, STOP during step 7.
    const { run, report, stderr } = scenario('overlap', dir);
    expect(run).toEqual({ code: 0, steps: 7, reloads: 2 });
    const { syncs } = report;
    // 1.0: g1 plus steps 1 and 2.
    expectOut(syncs['1.0']!.out, 0.1 + 0.003);
    expect(syncs['1.0']!.done).toMatchObject({ round: 1, attempt: 0, steps: 2, tokens: 512, modelRound: 0, appliedStaleness: 0, firstStep: 1, lastStep: 2, runner: 'stand-in' });
    expect(syncs['1.0']!.done!.baseSha256).toBe(sha256(syncFile('1.0', 'global', 'model.safetensors')));
    // 2.0, applied after step 4 and due at once (steps 3 and 4 since the snapshot): θ + α·(g − θₛ).
    const theta = 0.1 + 0.001 * (1 + 2 + 3 + 4);
    const applied = theta + 0.5 * (0.2 - (0.1 + 0.003));
    expectOut(syncs['2.0']!.out, applied);
    expect(syncs['2.0']!.done).toMatchObject({ round: 2, attempt: 0, steps: 2, modelRound: 1, appliedStaleness: 2, firstStep: 3, lastStep: 4 });
    expect(syncs['2.0']!.done!.baseSha256).toBe(sha256(syncFile('2.0', 'global', 'model.safetensors')));
    // 2.1 names the base again: nothing applied, and it counts from 2.0's start (steps 3 to 6).
    expectOut(syncs['2.1']!.out, applied + 0.005 + 0.006);
    expect(syncs['2.1']!.done).toMatchObject({ round: 2, attempt: 1, steps: 4, appliedStaleness: 2, firstStep: 3, lastStep: 6 });
    expect(syncs['2.1']!.done!.dataManifest.session_steps).toEqual([3, 6]);
    expect(syncs['2.1']!.done!.baseSha256).toBe(syncs['2.0']!.done!.baseSha256);
    for (const sync of ['1.0', '2.0', '2.1']) expect(syncs[sync]!.done!.outSha256).toBe(sha256(syncFile(sync, 'out', 'model.safetensors')));
    // state/ names the last snapshot's checkpoint, the only one kept.
    expect(report.state).toMatchObject({ sync: [2, 1], step: 6, done: syncs['2.1']!.done });
    expect(report.checkpoints).toEqual(['step-6.pt']);
    expect(report.progress.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(report.progress.map((l) => l.sync)).toEqual(['1.0', '1.0', null, null, null, null, null]);
    expect(report.progress.map((l) => l.appliedGlobalRound)).toEqual([0, 0, 0, 0, 1, 1, 1]);
    expect(stderr).toContain('STOP: exit 0 after step 7');
  });

  it('resumes from state/ at the last snapshot: writes its lost DONE.json again, cuts progress.jsonl back, applies the next global against θₛ, and exits 75 on a signal with state/ at the last snapshot', { timeout: RUN_TIMEOUT_MS }, () => {
    const before = JSON.parse(readFileSync(join(dir, 'state', 'session.json'), 'utf8')) as { done: SyncDone };
    // The driver removes 2.1's DONE.json and STOP, offers 3.0 (0.3) and signals during step 9.
    const { run, report, stderr } = scenario('restart', dir);
    expect(run.code).toBe(75);
    expect(report.syncs['2.1']!.done).toEqual(before.done);
    expect(report.progress.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // θₛ = 2.1's snapshot; 3.0 is applied after step 7, its snapshot taken after step 8.
    const snap = 0.1 + 0.001 * 10 + 0.5 * (0.2 - 0.103) + 0.011;
    expectOut(report.syncs['3.0']!.out, snap + 0.007 + 0.5 * (0.3 - snap) + 0.008);
    expect(report.syncs['3.0']!.done).toMatchObject({ round: 3, steps: 2, appliedStaleness: 1, firstStep: 7, lastStep: 8 });
    // The snapshot was committed at the boundary the signal was seen at, before the exit.
    expect(report.state).toMatchObject({ sync: [3, 0], step: 8 });
    expect(stderr).toMatch(/wrote the lost DONE\.json of sync 2\.1 again/);
    expect(stderr).toMatch(/exit 75 after step 9; state\/ keeps the snapshot of sync 3\.0/);
  });

  it('with NeMo 2.0\'s shape (a global converted and a snapshot exported by child processes) trains on while they run, applies the global and commits the snapshot once they end', { timeout: RUN_TIMEOUT_MS }, () => {
    // alpha 1: 2.0's global (0.2, offered during step 3) is converted during step 4, applied after it.
    const { run, report } = scenario('children', session('children', { overlap: { alpha: 1 } }));
    expect(run).toEqual({ code: 0, steps: 5, reloads: 1 }); // the first global was loaded by the framework itself
    expectOut(report.syncs['1.0']!.out, 0.103);
    expectOut(report.syncs['2.0']!.out, 0.1 + 0.01 + (0.2 - 0.103));
    expect(report.syncs['2.0']!.done).toMatchObject({ steps: 2, appliedStaleness: 2, firstStep: 3, lastStep: 4 });
    expect(report.state).toMatchObject({ sync: [2, 0], step: 4 }); // committed once its export ended
    expect(report.imports).toEqual([]); // the converted global is removed once every rank has loaded it
  });

  it('refuses a sync whose global is not READY.json\'s with 65, before anything is applied', { timeout: RUN_TIMEOUT_MS }, () => {
    const { run, report } = scenario('refused', session('refused'));
    expect(run.code).toMatchObject({ refused: 65, message: expect.stringMatching(/READY\.json's globalSha256/) as unknown });
    expect(report.syncs['2.0']).toEqual({});
    expect(report.state).toMatchObject({ sync: [1, 0], step: 2 });
  });

  it('exits 64 once the framework\'s iterations (nemo.session_steps) run out, after committing a snapshot taken at the last one', { timeout: RUN_TIMEOUT_MS }, () => {
    const { run, report } = scenario('cap', session('cap', { nemo: { session_steps: 2 } }));
    expect(run.code).toMatchObject({ refused: 64, message: expect.stringMatching(/raise nemo\.session_steps/) as unknown });
    expect(report.syncs['1.0']!.done).toMatchObject({ steps: 2, lastStep: 2 });
    expect(report.state).toMatchObject({ sync: [1, 0], step: 2 });
  });
});
