/**
 * Moving a federation from one coordinator to a standby pair (issue 19): the state dir's journal is
 * published into the pair's (empty) replicated journal stream, record for record, so the chain — and
 * every receipt's link to its round — stays intact; the checkpoints stay where they are, in the
 * state dir the pair shares. Used by `fedhpc admin audit import`.
 */
import { connect } from '@nats-io/transport-node';
import { join } from 'node:path';
import { natsConnectOptions, type NatsConnectSettings } from '../nats/options.js';
import { importJournal } from '../state/jetstream-journal.js';
import { journalStreamName, journalSubject } from '../state/journal-stream.js';
import { readJournal } from '../state/journal.js';

export interface ImportStateDirOptions {
  readonly stateDir: string;
  readonly nats: NatsConnectSettings;
  readonly federation: string;
  /** Replicas of the stream when the import creates it (3 on a 3-node cluster). */
  readonly replicas: number;
}

/** Publishes `stateDir`'s journal into the federation's empty journal stream; refuses a torn or broken journal and a stream that holds anything. */
export async function importStateDirJournal(o: ImportStateDirOptions): Promise<{ readonly records: number; readonly head: string; readonly stream: string }> {
  const records = await readJournal(join(o.stateDir, 'journal.jsonl'), { repairTornTail: false });
  const nc = await connect({ ...natsConnectOptions(o.nats, 'fedhpc-import'), reconnect: false });
  try {
    const stream = journalStreamName(o.federation);
    const r = await importJournal(records, { nc, stream, subject: journalSubject(o.federation), replicas: o.replicas, timeoutMs: o.nats.timeoutMs });
    return { ...r, stream };
  } finally {
    await nc.close();
  }
}
