/**
 * Checkpoints in the initial model's dtype, end to end: a coordinator and one site agent in this
 * process over real gRPC and mTLS (plain rounds, one site, no evaluation, so a round takes a
 * fraction of a second). The agent downloads a BF16 global model, trains from it and uploads Δ; the
 * coordinator steps its f32 master weights and commits a BF16 checkpoint, across a restart too.
 */
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { createSafetensorsWriter, memorySink, openSafetensors, type SafetensorsFile } from '../../aggregation/index.js';
import { openFileSource, sha256File, type FileSource } from '../../common/files.js';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import { createRunner, loadSiteConfig, readBuiltinModel, type Runner } from '../../site-agent/index.js';
import { createTestFederation, startCoordinatorInProcess, waitForCommitted, type TestFederation } from '../helpers/federation.js';
import { startAgentInProcess, type AgentUnderTest } from '../helpers/stand-in-coordinator.js';

/** The user's `__metadata__` of the initial model, which every checkpoint keeps. */
const USER_METADATA = { format: 'pt', license: 'CC-BY-4.0', source: 'https://example.org/model' };

/** Far below half a bf16 step at 1.0 (2^-8): a bf16 master would round every one of them away. */
const NUDGE = 2 ** -10;

/** A trainer whose every shard moves each weight by exactly +NUDGE from the global model it was given. */
const nudgeRunner: Runner = {
  kind: 'nudge',
  async train(req) {
    const src = await openFileSource(req.globalPath);
    try {
      const global = await openSafetensors(src);
      const out = join(req.roundDir, 'out', 'model.safetensors');
      await writeModel(out, global, (v) => v.map((x) => x + NUDGE), {});
      return { outPath: out, samples: 1, tokens: 1, steps: 1, trainLoss: 1, dataManifestSha256: '0'.repeat(64) };
    } finally {
      await src.close();
    }
  },
  evaluate: () => Promise.resolve({ loss: 1, samples: 1 }),
};

/** Writes `file`'s tensors through `map` as F32 (or `dtype`), with `metadata`. */
async function writeModel(
  path: string,
  file: SafetensorsFile,
  map: (v: Float32Array) => Float32Array,
  metadata: Record<string, string>,
  dtype: 'F32' | 'BF16' = 'F32',
): Promise<void> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, file.tensors.map((t) => ({ name: t.name, dtype, shape: t.shape })), metadata);
  for (const t of file.tensors) await w.writeF32(t.name, map(await file.readF32(t.name, 0, t.elements)));
  await w.finish();
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, sink.bytes());
}

/** Opens a file of the coordinator's state dir, hands it to `read` and closes it. */
async function inState<T>(fed: TestFederation, path: string, read: (f: SafetensorsFile) => Promise<T>): Promise<T> {
  const src: FileSource = await openFileSource(join(fed.dir, 'coordinator', 'state', path));
  try {
    return await read(await openSafetensors(src));
  } finally {
    await src.close();
  }
}

describe('checkpoints in the initial model dtype', () => {
  let fed: TestFederation | undefined;
  let coordinator: CoordinatorHandle | undefined;
  let agent: AgentUnderTest | undefined;
  afterEach(async () => {
    await agent?.stop();
    await coordinator?.stop();
    await fed?.cleanup();
    agent = coordinator = fed = undefined;
  });

  /** One plain site, fedavg lr 1, no evaluation; `initial` rewrites the provisioned initial model. */
  async function federation(rounds: number, initial: (f: TestFederation) => Promise<void>): Promise<TestFederation> {
    const f = await createTestFederation({
      sites: 1,
      run: { rounds, strategy: { name: 'fedavg', lr: 1 }, evaluate: false, secureAggregation: { enabled: false } },
    });
    await initial(f);
    return f;
  }

  function startAgent(f: TestFederation, runner: Runner): AgentUnderTest {
    return startAgentInProcess(f, 'site-1', f.address, { runner, reconnect: { initialMs: 50, maxMs: 200 } });
  }

  it("commits round 1 of a BF16 initial model as BF16, with the user's __metadata__ and the f32 master beside it", async () => {
    fed = await federation(1, async (f) => {
      // The builtin model, stored as BF16 by its user, with a licence and a source.
      const src = await openFileSource(f.files.initialModel);
      const file = await openSafetensors(src);
      const path = join(f.dir, 'initial-bf16.safetensors');
      await writeModel(path, file, (v) => v, USER_METADATA, 'BF16');
      await src.close();
      await f.patchCoordinatorConfig((c) => ({ ...c, model: { initial: path } }));
    });
    coordinator = await startCoordinatorInProcess(fed);
    // The real builtin trainer, reading the BF16 global the agent downloaded.
    const site = createRunner(loadSiteConfig(fed.files.siteConfigs.get('site-1')!));
    agent = startAgent(fed, site);
    const [round1] = (await waitForCommitted(fed.admin(), 1, 20_000)).rounds.filter((r) => r.outcome === 'committed');
    const sha = round1!.modelSha256;

    const model = await inState(fed, `models/${sha}.safetensors`, async (f) => ({ dtypes: new Set(f.tensors.map((t) => t.dtype)), metadata: f.metadata }));
    expect(model.dtypes).toEqual(new Set(['BF16']));
    expect(model.metadata).toEqual({ ...USER_METADATA, fedhpc_run: 'test-run', fedhpc_round: '1' });
    const master = await inState(fed, `optimizer/${sha}.master.safetensors`, async (f) => new Set(f.tensors.map((t) => t.dtype)));
    expect(master).toEqual(new Set(['F32']));
    // What sites download is the file as written: its SHA-256 is the one they verify.
    expect(await sha256File(join(fed.dir, 'coordinator', 'state', 'models', `${sha}.safetensors`))).toBe(sha);
    // The builtin trainer reads it back as a model.
    expect((await readBuiltinModel(join(fed.dir, 'coordinator', 'state', 'models', `${sha}.safetensors`))).params.size).toBeGreaterThan(0);
  }, 20_000);

  it('keeps updates below half a bf16 step in the f32 master, across a coordinator restart', async () => {
    const ones = Float32Array.of(1, 1, 1, 1);
    fed = await federation(3, async (f) => {
      const sink = memorySink();
      const w = await createSafetensorsWriter(sink, [{ name: 'w', dtype: 'BF16', shape: [4] }], USER_METADATA);
      await w.writeF32('w', ones);
      await w.finish();
      const path = join(f.dir, 'ones-bf16.safetensors');
      await writeFile(path, sink.bytes());
      await f.patchCoordinatorConfig((c) => ({ ...c, model: { initial: path } }));
    });
    coordinator = await startCoordinatorInProcess(fed);
    agent = startAgent(fed, nudgeRunner);
    const admin = fed.admin();
    const before = (await waitForCommitted(admin, 3, 20_000)).rounds.filter((r) => r.outcome === 'committed');
    const third = before[2]!.modelSha256;
    // Three nudges of 2^-10 stay below half a bf16 step: the checkpoint still reads 1, the master does not.
    expect(await inState(fed, `models/${third}.safetensors`, (f) => f.readF32('w', 0, 4))).toEqual(ones);
    expect(await inState(fed, `optimizer/${third}.master.safetensors`, (f) => f.readF32('w', 0, 4))).toEqual(ones.map((x) => x + 3 * NUDGE));

    await coordinator.stop();
    coordinator = undefined;
    await fed.patchCoordinatorConfig((c) => ({ ...c, run: { ...(c['run'] as object), rounds: 5 } }));
    coordinator = await startCoordinatorInProcess(fed);
    const after = (await waitForCommitted(admin, 5, 20_000)).rounds.filter((r) => r.outcome === 'committed');
    expect(after[3]!.parentSha256).toBe(third);
    const fifth = after[4]!.modelSha256;
    // Resumed from the master (1 + 3·2^-10), two more nudges reach 1 + 5·2^-10, which rounds to
    // bf16 1 + 2^-7; stepping from the rounded file would have left 1 + 2·2^-10, still 1.
    expect(await inState(fed, `optimizer/${fifth}.master.safetensors`, (f) => f.readF32('w', 0, 4))).toEqual(ones.map((x) => x + 5 * NUDGE));
    expect(await inState(fed, `models/${fifth}.safetensors`, (f) => f.readF32('w', 0, 4))).toEqual(ones.map((x) => x + 2 ** -7));
    expect(await inState(fed, `models/${fifth}.safetensors`, async (f) => [f.tensor('w').dtype, f.metadata['license']])).toEqual(['BF16', 'CC-BY-4.0']);
  }, 20_000);
});
