/**
 * The bases an upload may name, and the work already counted (docs/protocol.md, "Bases, staleness
 * and folded work"): every committed model of the run with the round that committed it (the initial
 * model is round 0), and for each site the bases whose work a committed round counted — as its
 * fresh part or a folded one. Built from the journal at start and kept current at each commit, so a
 * restarted coordinator refuses a fold it counted before the crash.
 */
import type { ParticipantRecord, RoundCommittedRecord } from '../state/records.js';

export class RunBases {
  private readonly roundOfModel = new Map<string, number>();
  private readonly counted = new Map<string, Set<string>>();

  constructor(initialModelSha256: string, committed: readonly RoundCommittedRecord[] = []) {
    this.roundOfModel.set(initialModelSha256, 0);
    for (const c of committed) this.recordCommit(c.round, c.modelSha256, c.parentSha256, c.participants);
  }

  /** The round that committed `sha256` (0: the initial model), or undefined for no model of the run. */
  roundOf(sha256: string): number | undefined {
    return this.roundOfModel.get(sha256);
  }

  /** Whether a committed round counted `site`'s work trained from `base`. */
  isCounted(site: string, base: string): boolean {
    return this.counted.get(site)?.has(base) ?? false;
  }

  /**
   * A committed round: its model becomes a base, and each participant's parts are counted. A record
   * from before protocol version 4 names no base: its participants trained from the parent.
   */
  recordCommit(round: number, modelSha256: string, parentSha256: string, participants: readonly ParticipantRecord[]): void {
    this.roundOfModel.set(modelSha256, round);
    for (const p of participants) {
      let bases = this.counted.get(p.site);
      if (!bases) this.counted.set(p.site, (bases = new Set()));
      bases.add(p.baseModelSha256 ?? parentSha256);
      for (const f of p.folded ?? []) bases.add(f.baseModelSha256);
    }
  }
}
