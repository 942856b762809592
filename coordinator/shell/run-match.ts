/**
 * Whether a coordinator's configured run may resume the run its journal started under the same id
 * (issue 19: "a coordinator whose run config differs from the journal's is refused with a code").
 * The journal is what the run means: its `run-started` record keeps the resolved run (`config.run`,
 * secrets left out), and a restart — the same coordinator on its state dir, or a standby taking over
 * — must drive that run, not a variant of it. So every field of the run must be as journaled, with
 * one exception: more rounds than the journal's count extend the run (`run-extended`). Fewer rounds,
 * another strategy or learning rate, secure aggregation turned on or off, other deadlines, sites,
 * weighting, encoding or training settings are refused, naming each field with both values.
 *
 * What lies outside `run` is how this coordinator operates, not what the run computes (listen
 * address, TLS files, limits, retention, metrics, NATS, `ha`, log level, members), and is not
 * compared; nor is `model.initial`, a file a resumed run never reads again: its start is pinned by
 * the journal's `initialModelSha256` and checkpoint. Pure: records and config in, a result out.
 */
import { err, ok, type Result } from '../../aggregation/index.js';
import { auditedConfig } from '../audit/config.js';
import { runSchema, type ResolvedRun } from '../config.js';
import type { RunStartedRecord } from '../state/records.js';
import { runPlanFromConfig } from './plan.js';

/** What a restart does with a journaled run whose configured run matches it. */
export type RunResumption = { readonly kind: 'resume' } | { readonly kind: 'extend'; readonly rounds: number };

/** A run as journaled: its `run-started` record and its round count after any extension. */
export interface JournaledRun {
  readonly started: RunStartedRecord;
  readonly rounds: number;
}

/** Longest value quoted in a difference, in characters (a training setting may be long). */
const MAX_VALUE_CHARS = 160;

/**
 * Compares `configured` with the run `journaled` started (same run id): `resume` when they agree,
 * `extend` when the configuration only adds rounds, otherwise `RUN_CONFIG_MISMATCH` with one issue
 * per differing field (`run.strategy.lr: journal 0.7, config 0.5`) and the fields, comma-separated,
 * in `context.fields`.
 * Journals written before `run-started` kept the config are compared on the record's own fields
 * (plan, strategy, weighting, encoding, train, checkpoint dtype).
 */
export function matchJournaledRun(journaled: JournaledRun, configured: ResolvedRun): Result<RunResumption, 'RUN_CONFIG_MISMATCH'> {
  const issues: string[] = [];
  const fields: string[] = [];
  if (configured.rounds < journaled.rounds) {
    fields.push('run.rounds');
    issues.push(`run.rounds: journal ${journaled.rounds}, config ${configured.rounds} (a run may be extended, never shortened)`);
  }
  const [journal, config] = comparable(journaled.started, configured);
  for (const d of differences('', journal, config)) {
    fields.push(d.field);
    issues.push(`${d.field}: journal ${d.journal}, config ${d.config}`);
  }
  if (issues.length > 0) return err('RUN_CONFIG_MISMATCH', issues, { runId: configured.id, fields: fields.join(', ') });
  return ok(configured.rounds > journaled.rounds ? { kind: 'extend', rounds: configured.rounds } : { kind: 'resume' });
}

/** The journal's side and the config's side in the same shape, rounds left out (they are compared apart). */
function comparable(started: RunStartedRecord, configured: ResolvedRun): [Record<string, unknown>, Record<string, unknown>] {
  const journaledRun = started.config?.['run'];
  if (journaledRun !== undefined) {
    // Parsed again so that a setting added since the run started reads as its default on both
    // sides; a journaled run this version refuses is compared as it stands.
    const parsed = runSchema.safeParse(journaledRun);
    return [{ run: withoutRounds(json(auditedConfig(parsed.success ? parsed.data : (journaledRun as object)))) }, { run: withoutRounds(json(auditedConfig(configured))) }];
  }
  const plan = runPlanFromConfig({ run: configured });
  return [
    json({ plan: withoutRounds(started.plan ?? {}), strategy: started.strategy, weighting: started.weighting, encoding: started.encoding, train: started.train, checkpointDtype: started.checkpointDtype }),
    json({ plan: withoutRounds(plan), strategy: configured.strategy, weighting: configured.weighting, encoding: configured.encoding, train: configured.train, checkpointDtype: configured.checkpointDtype }),
  ];
}

function withoutRounds(value: unknown): Record<string, unknown> {
  const { rounds: _rounds, ...rest } = isObject(value) ? value : {};
  return rest;
}

/** `value` as JSON reads it back: absent optional fields dropped, as in a journaled record. */
function json(value: object): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The leaves where `journal` and `config` differ, by dotted path; arrays compare whole. */
function differences(path: string, journal: unknown, config: unknown): { field: string; journal: string; config: string }[] {
  if (isObject(journal) && isObject(config)) {
    const keys = [...new Set([...Object.keys(journal), ...Object.keys(config)])];
    return keys.flatMap((k) => differences(path ? `${path}.${k}` : k, journal[k], config[k]));
  }
  const [j, c] = [canonical(journal), canonical(config)];
  return j === c ? [] : [{ field: path, journal: quoted(j), config: quoted(c) }];
}

/** JSON with object keys sorted, so that key order never counts as a difference; undefined when absent. */
function canonical(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  return JSON.stringify(value, (_key, v: unknown) => (isObject(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v));
}

function quoted(text: string | undefined): string {
  if (text === undefined) return '(absent)';
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}… (${text.length} characters)` : text;
}
