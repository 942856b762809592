/**
 * The provenance of an exported model, read from a state dir's journal: the run, every committed
 * round up to the exported one with its participants and the data manifests they reported, the
 * strategy, secure aggregation, and the audit chain head. Both export and its verification build
 * it here, so what a card says and what the journal says are compared field by field.
 */
import { stat } from 'node:fs/promises';
import { journalFile } from '../audit/index.js';
import { readJournal, type JournalRecord } from '../state/journal.js';
import { recordsOf, type RoundCommittedRecord, type RunStartedRecord } from '../state/records.js';
import { ExportError } from './errors.js';

/** One committed round of the model's lineage, as the card lists it. */
export interface RoundProvenance {
  readonly round: number;
  readonly attempt: number;
  readonly parentSha256: string;
  readonly modelSha256: string;
  readonly participants: readonly { readonly site: string; readonly dataManifestSha256: string; readonly weight: number; readonly samples: number; readonly tokens: number }[];
  readonly dropped: readonly string[];
}

/** What the card records of where the model came from (the card's JSON block, less its files). */
export interface Provenance {
  readonly runId: string;
  readonly federation: string | null;
  /** Rounds the run planned (its last `run-extended` count when extended). */
  readonly runRounds: number;
  readonly round: number;
  readonly checkpointSha256: string;
  /** The `round-committed` record of the exported round: its place and hash in the chain. */
  readonly committedRecord: { readonly seq: number; readonly hash: string };
  /** The last record of the journal when the export was made. */
  readonly auditChainHead: { readonly seq: number; readonly hash: string };
  readonly strategy: unknown;
  readonly weighting: string;
  readonly aggregator: unknown;
  /** The run's `secureAggregation` settings as it started (`{ enabled: false }` for plain rounds). */
  readonly secureAggregation: unknown;
  readonly pins: { readonly modelConfigSha256: string | null; readonly tokenizerSha256: string | null };
  readonly rounds: readonly RoundProvenance[];
}

/** The verified journal of a state dir; a missing journal or a broken chain is EXPORT_STATE_INVALID. */
export async function readStateJournal(stateDir: string): Promise<JournalRecord[]> {
  const file = journalFile(stateDir);
  if (!(await stat(file).then((s) => s.isFile(), () => false))) throw new ExportError('EXPORT_STATE_INVALID', `${file} does not exist: is ${stateDir} a coordinator state dir?`);
  try {
    return await readJournal(file, { repairTornTail: false });
  } catch (cause) {
    throw new ExportError('EXPORT_STATE_INVALID', `the journal of ${stateDir} does not verify: ${(cause as Error).message}`, {}, { cause });
  }
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/**
 * The provenance of round `round` of `runId` (default: the run started last). A round the run never
 * committed is EXPORT_ROUND_NOT_COMMITTED; `head` is the record to name as the chain head (default:
 * the last one).
 */
export function provenanceOf(records: readonly JournalRecord[], round: number, runId?: string, head: JournalRecord | undefined = records.at(-1)): Provenance {
  const bodies = records.map((r) => r.body);
  const started = bodies.filter((b): b is RunStartedRecord & typeof b => b.type === 'run-started');
  const id = runId ?? started.at(-1)?.runId;
  const start = started.find((s) => s.runId === id);
  if (id === undefined || start === undefined || head === undefined) {
    throw new ExportError('EXPORT_ROUND_NOT_COMMITTED', runId === undefined ? 'the state dir holds no run' : `the state dir holds no run ${runId}`);
  }
  const committed = recordsOf(bodies, id, 'round-committed');
  const target = committed.find((c) => c.round === round);
  if (target === undefined) {
    const last = committed.at(-1)?.round;
    throw new ExportError('EXPORT_ROUND_NOT_COMMITTED', `round ${round} of run ${id} is not committed (${last === undefined ? 'no round is' : `the last committed round is ${last}`})`, { round });
  }
  const committedRecord = records.find((r) => (r.body as unknown) === target);
  const config = (start.config ?? {}) as Record<string, unknown>;
  const run = (config['run'] ?? {}) as Record<string, unknown>;
  const pins = (start.train['pins'] ?? {}) as Record<string, unknown>;
  const extended = recordsOf(bodies, id, 'run-extended').at(-1)?.rounds;
  return {
    runId: id,
    federation: str(config['federation']),
    runRounds: extended ?? start.plan.rounds,
    round,
    checkpointSha256: target.modelSha256,
    committedRecord: { seq: committedRecord?.seq ?? 0, hash: committedRecord?.hash ?? '' },
    auditChainHead: { seq: head.seq, hash: head.hash },
    strategy: start.strategy,
    weighting: start.weighting,
    aggregator: run['aggregator'] ?? 'mean',
    // The Shamir threshold as the run resolved it (the config may leave it to its default).
    secureAggregation: start.plan.secure ? { ...((run['secureAggregation'] ?? {}) as object), threshold: start.plan.secure.threshold } : (run['secureAggregation'] ?? { enabled: false }),
    pins: { modelConfigSha256: str(pins['modelConfigSha256']), tokenizerSha256: str(pins['tokenizerSha256']) },
    rounds: committed.filter((c) => c.round <= round).map(roundOf),
  };
}

function roundOf(c: RoundCommittedRecord): RoundProvenance {
  return {
    round: c.round,
    attempt: c.attempt,
    parentSha256: c.parentSha256,
    modelSha256: c.modelSha256,
    participants: c.participants.map((p) => ({ site: p.site, dataManifestSha256: p.dataManifestSha256, weight: p.weight, samples: p.samples, tokens: p.tokens })),
    dropped: [...c.dropped],
  };
}
