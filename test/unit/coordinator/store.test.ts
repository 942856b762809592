import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoordinatorError, type CoordinatorErrorCode } from '../../../coordinator/core/errors.js';
import { LocalStateStore } from '../../../coordinator/state/store.js';

let dir: string;
let store: LocalStateStore | undefined;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-store-'));
});
afterEach(async () => {
  await store?.close();
  store = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function open(): Promise<LocalStateStore> {
  store = await LocalStateStore.open(dir, () => 1);
  return store;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function expectCode(fn: () => unknown, code: CoordinatorErrorCode): Promise<void> {
  const error = await (async () => fn())().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CoordinatorError);
  expect((error as CoordinatorError).code).toBe(code);
}

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

describe('LocalStateStore models', () => {
  it('names a committed checkpoint by the SHA-256 of the file', async () => {
    const s = await open();
    const file = await s.createModel();
    await file.write(bytes(1, 2, 3));
    await file.write(bytes(4, 5));
    expect(file.bytesWritten).toBe(5);
    const { sha256: sha } = await file.commit();
    const onDisk = await readFile(join(dir, 'models', `${sha}.safetensors`));
    expect(sha).toBe(sha256(onDisk));
    expect(sha).toBe(sha256(bytes(1, 2, 3, 4, 5)));
    expect(s.modelPath(sha)).toBe(join(dir, 'models', `${sha}.safetensors`));
    expect(await s.hasModel(sha)).toBe(true);
    const src = await s.openModel(sha);
    expect(src.size).toBe(5);
    expect(Array.from(await src.read(1, 3))).toEqual([2, 3, 4]);
    await src.close();
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('reports MODEL_NOT_FOUND for a well-formed but unknown hash', async () => {
    const s = await open();
    const unknown = 'a'.repeat(64);
    expect(await s.hasModel(unknown)).toBe(false);
    await expectCode(() => s.openModel(unknown), 'MODEL_NOT_FOUND');
  });

  it('refuses names that are not lowercase hex SHA-256 with BAD_REQUEST (no path traversal)', async () => {
    const s = await open();
    await writeFile(join(dir, 'x.safetensors'), 'outside models/');
    for (const name of ['../x', `../${'a'.repeat(61)}`, 'A'.repeat(64), 'a'.repeat(63), `${'a'.repeat(64)}/..`, '']) {
      await expectCode(() => s.modelPath(name), 'BAD_REQUEST');
      await expectCode(() => s.hasModel(name), 'BAD_REQUEST');
      await expectCode(() => s.openModel(name), 'BAD_REQUEST');
    }
  });

  it('leaves nothing behind when a pending checkpoint is discarded', async () => {
    const s = await open();
    const file = await s.createModel();
    await file.write(bytes(9, 9, 9));
    await file.discard();
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(await readdir(join(dir, 'models'))).toEqual([]);
  });

  it('removes leftover temp files on open but keeps committed checkpoints', async () => {
    let s = await open();
    const file = await s.createModel();
    await file.write(bytes(7));
    const { sha256: sha } = await file.commit();
    const abandoned = await s.createModel(); // a crash before commit
    await abandoned.write(bytes(1, 2));
    await writeFile(join(dir, 'tmp', 'stray'), 'x');
    await s.close();
    store = undefined;
    expect((await readdir(join(dir, 'tmp'))).length).toBe(2);
    s = await open();
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(await s.hasModel(sha)).toBe(true);
    await abandoned.discard(); // close the handle of the crashed writer
  });
});

describe('LocalStateStore optimizer state', () => {
  it('stores state per slot beside a checkpoint, under the name its writer gives', async () => {
    const s = await open();
    const model = 'b'.repeat(64);
    expect(await s.hasOptimizerState(model, 'momentum')).toBe(false);
    const f = await s.createOptimizerState();
    await f.write(bytes(1, 2, 3, 4));
    await f.commit(`${model}.momentum`);
    expect(await s.hasOptimizerState(model, 'momentum')).toBe(true);
    expect(await s.hasOptimizerState(model, 'm')).toBe(false);
    expect(await s.hasOptimizerState('c'.repeat(64), 'momentum')).toBe(false);
    expect(await readFile(join(dir, 'optimizer', `${model}.momentum.safetensors`))).toEqual(Buffer.from([1, 2, 3, 4]));
    const src = await s.openOptimizerState(model, 'momentum');
    expect(Array.from(await src.read(0, 4))).toEqual([1, 2, 3, 4]);
    await src.close();
  });

  it('refuses optimizer state names that are not <sha256>.<slot>', async () => {
    const s = await open();
    const sha = 'd'.repeat(64);
    await expectCode(() => s.hasOptimizerState('../x', 'momentum'), 'BAD_REQUEST');
    await expectCode(() => s.hasOptimizerState(sha, '../m'), 'BAD_REQUEST');
    await expectCode(() => s.hasOptimizerState(sha, 'a.b'), 'BAD_REQUEST');
    await expectCode(() => s.openOptimizerState(sha, ''), 'BAD_REQUEST');
    const f = await s.createOptimizerState();
    await f.write(bytes(1));
    await expectCode(() => f.commit('nope'), 'BAD_REQUEST');
    await f.discard();
    expect(await readdir(join(dir, 'optimizer'))).toEqual([]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });
});

describe('LocalStateStore spools and journal', () => {
  it('creates spool folders per attempt and prunes all but the kept one', async () => {
    const s = await open();
    const a = await s.spoolDir(1, 0);
    const b = await s.spoolDir(1, 1);
    const c = await s.spoolDir(2, 0);
    expect(a).toBe(join(dir, 'spool', 'round-1.0'));
    await writeFile(join(b, 'site-a.delta'), 'x');
    await writeFile(join(c, 'site-b.delta'), 'y');
    expect(await s.spoolDir(1, 1)).toBe(b); // idempotent
    await s.pruneSpools({ round: 1, attempt: 1 });
    expect(await readdir(join(dir, 'spool'))).toEqual(['round-1.1']);
    expect(await readdir(b)).toEqual(['site-a.delta']);
    await s.pruneSpools();
    expect(await readdir(join(dir, 'spool'))).toEqual([]);
  });

  it('appends to the journal and reads it back after reopen', async () => {
    let s = await open();
    await s.append({ type: 'run-started', runId: 'r' });
    await s.append({ type: 'round-opened', runId: 'r', round: 1, attempt: 0 });
    await s.close();
    store = undefined;
    s = await open();
    expect(s.records().map((r) => [r.seq, r.body.type])).toEqual([
      [1, 'run-started'],
      [2, 'round-opened'],
    ]);
  });

  it('creates the layout in a fresh folder', async () => {
    const fresh = join(dir, 'nested', 'state');
    await mkdir(join(dir, 'nested'));
    const s = await LocalStateStore.open(fresh);
    expect((await readdir(fresh)).sort()).toEqual(['journal.jsonl', 'models', 'optimizer', 'spool', 'tmp']);
    await s.close();
  });
});

describe('LocalStateStore staged checkpoints (issue 22)', () => {
  it('publishes a staged file as a checkpoint under the SHA-256 it reads, and another as its optimizer state', async () => {
    const s = await open();
    const model = join(s.stagingDir, '.stage-model');
    const state = join(s.stagingDir, '.stage-momentum');
    await writeFile(model, bytes(1, 2, 3));
    await writeFile(state, bytes(4, 5));
    const { sha256: sha } = await s.publishStagedModel(model);
    expect(sha).toBe(sha256(bytes(1, 2, 3)));
    await s.publishStagedOptimizerState(state, sha, 'momentum');
    expect(await readFile(s.modelPath(sha))).toEqual(Buffer.from([1, 2, 3]));
    expect(await readFile(join(dir, 'optimizer', `${sha}.momentum.safetensors`))).toEqual(Buffer.from([4, 5]));
    expect(await readdir(s.stagingDir)).toEqual([]);
    await writeFile(state, bytes(6));
    await expectCode(() => s.publishStagedOptimizerState(state, sha, '../x'), 'BAD_REQUEST');
  });
});
