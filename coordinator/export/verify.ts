/**
 * `fedhpc export verify DIR --state-dir D`: checks an export against its card and the card against
 * the journal. Every file but the card must be listed with its SHA-256 and no other file may be
 * there; the card's text must be what its block renders; the block's provenance must be what the
 * journal says now (the chain head it names still in the chain); and, while the state dir keeps
 * the checkpoint, every exported tensor must be the checkpoint's, in the export's dtype.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { openSafetensors, type FloatDtype, type SafetensorsFile } from '../../aggregation/index.js';
import { openFileSource, sha256File, type FileSource } from '../../common/files.js';
import { canonicalJson } from '../state/journal.js';
import { parseCard, renderCard, type CardData } from './card.js';
import { ExportError } from './errors.js';
import { provenanceOf, readStateJournal } from './provenance.js';
import { tensorPieces } from './weights.js';

/** What verification found; `ok` only when `issues` is empty. */
export interface ExportVerifyReport {
  readonly ok: boolean;
  readonly runId: string | null;
  readonly round: number | null;
  readonly issues: readonly string[];
  /** Whether the weights were compared with the checkpoint (false: retention has removed it since). */
  readonly weightsChecked: boolean;
}

/** Verifies the export in `dir` against the journal of `stateDir`. */
export async function verifyHfExport(dir: string, stateDir: string): Promise<ExportVerifyReport> {
  const text = await readFile(join(dir, 'README.md'), 'utf8').catch(() => undefined);
  if (text === undefined) return { ok: false, runId: null, round: null, issues: [`${dir} has no README.md: not a fedhpc export`], weightsChecked: false };
  const parsed = parseCard(text);
  if (!parsed.ok) return { ok: false, runId: null, round: null, issues: parsed.issues, weightsChecked: false };
  const card = parsed.value;
  const issues: string[] = [];
  if (renderCard(card) !== text) issues.push('README.md is not the card its provenance block renders: its text was edited');
  await checkFiles(dir, card, issues);
  await checkJournal(stateDir, card, issues);
  const weightsChecked = await checkWeights(dir, stateDir, card, issues);
  return { ok: issues.length === 0, runId: card.runId, round: card.round, issues, weightsChecked };
}

async function checkFiles(dir: string, card: CardData, issues: string[]): Promise<void> {
  const here = (await readdir(dir)).filter((n) => n !== 'README.md');
  for (const n of here) if (!(n in card.files)) issues.push(`${n} is in the export but not in its card`);
  for (const [name, sha] of Object.entries(card.files)) {
    if (!here.includes(name)) issues.push(`${name} is in the card but missing`);
    else if ((await sha256File(join(dir, name))) !== sha) issues.push(`${name} has another SHA-256 than the card says (${sha}): it was changed`);
  }
}

async function checkJournal(stateDir: string, card: CardData, issues: string[]): Promise<void> {
  let records;
  try {
    records = await readStateJournal(stateDir);
  } catch (e) {
    issues.push((e as Error).message);
    return;
  }
  const head = records.find((r) => r.seq === card.auditChainHead.seq);
  if (head?.hash !== card.auditChainHead.hash) {
    issues.push(`the card's audit chain head (seq ${card.auditChainHead.seq}, ${card.auditChainHead.hash}) is not in this state dir's chain`);
    return;
  }
  let truth;
  try {
    truth = provenanceOf(records, card.round, card.runId, head);
  } catch (e) {
    if (!(e instanceof ExportError)) throw e;
    issues.push(e.message);
    return;
  }
  const claimed = { ...card } as Record<string, unknown>;
  for (const [k, v] of Object.entries(truth)) {
    if (canonicalJson(claimed[k]) !== canonicalJson(v)) issues.push(`the card's ${k} differs from the journal's: ${canonicalJson(claimed[k]).slice(0, 200)} vs ${canonicalJson(v).slice(0, 200)}`);
  }
}

/** The exported file holding each tensor: the index's weight map, else `model.safetensors`. */
async function weightFiles(dir: string, card: CardData): Promise<Map<string, string>> {
  if ('model.safetensors.index.json' in card.files) {
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map?: Record<string, string> };
    return new Map(Object.entries(index.weight_map ?? {}));
  }
  return new Map([['*', 'model.safetensors']]);
}

async function checkWeights(dir: string, stateDir: string, card: CardData, issues: string[]): Promise<boolean> {
  const checkpoint = join(stateDir, 'models', `${card.checkpointSha256}.safetensors`);
  const src = await openFileSource(checkpoint).catch(() => undefined);
  if (src === undefined) return false;
  const opened = new Map<string, { src: FileSource; file: SafetensorsFile }>();
  try {
    const ckpt = await openSafetensors(src);
    const where = await weightFiles(dir, card);
    for (const t of ckpt.tensors) {
      const name = where.get(t.name) ?? where.get('*');
      if (name === undefined || !(name in card.files)) {
        issues.push(`tensor ${t.name} of the checkpoint is in no exported file`);
        continue;
      }
      if (!opened.has(name)) {
        const s = await openFileSource(join(dir, name));
        opened.set(name, { src: s, file: await openSafetensors(s) });
      }
      const exported = opened.get(name)!.file;
      const info = exported.tensors.find((x) => x.name === t.name);
      if (info === undefined || info.shape.join(',') !== t.shape.join(',')) {
        issues.push(`tensor ${t.name} is missing from ${name} or has another shape`);
        continue;
      }
      let at = 0;
      for await (const piece of tensorPieces(ckpt, t, info.dtype as FloatDtype)) {
        const got = await exported.readBytes(t.name, at, piece.length);
        if (Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.length), Buffer.from(piece.buffer, piece.byteOffset, piece.length)) !== 0) {
          issues.push(`tensor ${t.name} in ${name} is not the checkpoint's in ${info.dtype}`);
          break;
        }
        at += piece.length;
      }
    }
    // A tensor added beside the checkpoint's would pass the loop above: count them all.
    let count = 0;
    for (const name of Object.keys(card.files).filter((n) => n.endsWith('.safetensors'))) {
      const s = await openFileSource(join(dir, name));
      count += (await openSafetensors(s).finally(() => s.close())).tensors.length;
    }
    if (count !== ckpt.tensors.length) issues.push(`the export holds ${count} tensors, the checkpoint ${ckpt.tensors.length}`);
    return true;
  } finally {
    await src.close();
    for (const o of opened.values()) await o.src.close();
  }
}
