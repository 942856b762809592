/**
 * A standby's check of its configured run against the replicated journal (issue 19): a standby
 * whose run differs from the one the journal started would be refused when it takes over
 * (`RUN_CONFIG_MISMATCH`, coordinator/shell/run-match.ts), so it is refused while it stands by,
 * before any failover needs it. The standby follows the journal stream as a reader (no term: it
 * never writes) and checks again whenever the chain has grown — the leader may start or extend a
 * run after the standby started. Until the stream can be read (NATS without quorum) nothing is
 * decided; the check at takeover still stands.
 */
import type { Logger } from '../../common/logger.js';
import type { ResolvedCoordinatorConfig } from '../config.js';
import { checkConfiguredRun } from '../shell/run-start.js';
import type { JournalRecord } from '../state/journal.js';

/** What the check reads: the chain as of now, kept current (a `JetStreamJournal` without a term). */
export interface JournalReader {
  records(): readonly JournalRecord[];
  close(): Promise<void>;
}

/** A standby's follower of the journal, checking its configured run. */
export interface RunCheck {
  /** Resolves with the refusal (`RUN_CONFIG_MISMATCH`, or a journaled run this version cannot read); never rejects. */
  readonly refused: Promise<unknown>;
  /** Checks again when the chain has grown since the last check (opens the reader first if needed). */
  check(): void;
  /** Stops following (no refusal after it is called; the same promise each time); a reader still opening is closed once open. */
  close(): Promise<void>;
}

export interface RunCheckOptions {
  readonly config: Pick<ResolvedCoordinatorConfig, 'run'>;
  readonly logger: Logger;
  /** Opens the reader of the federation's journal; tried again at the next check when it fails. */
  readonly openReader: () => Promise<JournalReader>;
}

/** Starts following the journal; the first check runs as soon as the reader has caught up. See the module comment. */
export function startRunCheck(o: RunCheckOptions): RunCheck {
  let reader: JournalReader | undefined;
  let opening: Promise<void> | undefined;
  let checkedLength = -1;
  let closed = false;
  let warned = false;
  let refuse: (err: unknown) => void = () => undefined;
  const refused = new Promise<unknown>((resolve) => (refuse = resolve));

  const open = (): void => {
    opening ??= o.openReader().then(
      async (journal) => {
        if (closed) return journal.close();
        reader = journal;
        check();
      },
      (err: unknown) => {
        opening = undefined;
        if (closed || warned) return;
        warned = true;
        o.logger.warn({ phase: 'standby', err: { message: (err as Error).message } }, 'cannot read the journal yet: the configured run is checked once it can be, and again at takeover');
      },
    );
  };

  const check = (): void => {
    if (closed) return;
    if (!reader) return open();
    const records = reader.records();
    if (records.length === checkedLength) return;
    checkedLength = records.length;
    try {
      checkConfiguredRun(records, o.config);
    } catch (err) {
      closed = true;
      refuse(err);
    }
  };

  let closing: Promise<void> | undefined;
  open();
  return {
    refused,
    check,
    close() {
      closed = true;
      const current = reader;
      reader = undefined;
      return (closing ??= current ? current.close() : Promise.resolve());
    },
  };
}
