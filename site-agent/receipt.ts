/**
 * Receipts of committed rounds (audit trail). After each upload the agent remembers what it
 * contributed (run, round, the model it trained on, its data manifest); when a later task shows
 * that round committed (its global model and `modelRound`), it signs a receipt with its site
 * certificate's key and submits it. A site signs only facts it knows itself — the usage it signs
 * (protocol version 6) is its own measure of the round's allocation (site-agent/usage.ts).
 */
import type * as grpc from '@grpc/grpc-js';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import { droppedConnection } from '../common/coordinator-verdict.js';
import { signReceipt, type ReceiptDelta } from '../common/receipt.js';
import { usageToWire, type RoundUsage } from '../common/usage.js';
import type { SiteServiceClient } from '../proto/index.js';
import { classifyFailure } from './retry.js';
import type { Allocation } from './usage.js';

/** What the agent contributed to a round. */
export interface Contribution {
  readonly runId: string;
  readonly round: number;
  readonly parentSha256: string;
  readonly dataManifestSha256: string;
  /** How the round's shard was allocated (its runner's word); undefined: not known (a restart). */
  readonly allocation?: Allocation | undefined;
  /** The allocations of the kept parts the upload folded (issue 16): their GPU time counts in this receipt. */
  readonly foldedAllocations?: readonly (Allocation | undefined)[] | undefined;
  /** What the upload was recorded under (its receiver's hash, or its parts'): a version 3 receipt names it; undefined, version 2. */
  readonly delta?: ReceiptDelta | undefined;
}

export interface ReceiptSignerOptions {
  readonly site: string;
  /** The site certificate (PEM): its subject's O names the federation. */
  readonly certificatePem: string;
  readonly keyPem: string;
  readonly logger: Logger;
  /** The current client, if connected. */
  readonly client: () => SiteServiceClient | undefined;
  /**
   * The coordinator's verdict on a contribution: `counted` when it accepted the receipt (the
   * committed round holds this site's upload), false when it answered NOT_INVITED (the round
   * committed without this site). Other answers say neither, and nothing is called.
   */
  readonly onVerdict?: (c: Contribution, counted: boolean) => void;
  /** Measures a contribution's allocations (its own, then its folded parts') into the usage its receipt carries (`final`: the run's last round). */
  readonly measure: (allocation: Allocation | undefined, folded: readonly (Allocation | undefined)[], final: boolean, signal: AbortSignal) => Promise<RoundUsage>;
}

/** Contributions remembered at most (older ones are forgotten unsigned). */
const KEEP = 16;

/** Remembers contributions and signs each once its round is known to be committed. */
export class ReceiptSigner {
  private readonly pending = new Map<string, Contribution>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly key: KeyObject;
  private readonly federation: string;

  constructor(private readonly o: ReceiptSignerOptions) {
    this.key = createPrivateKey(o.keyPem);
    this.federation = /^O=(.*)$/m.exec(new X509Certificate(o.certificatePem).subject)?.[1] ?? '';
  }

  /** Records an accepted upload (the latest attempt of a round replaces an earlier one). */
  contributed(c: Contribution): void {
    const k = `${c.runId}/${c.round}`;
    this.pending.delete(k);
    this.pending.set(k, c);
    while (this.pending.size > KEEP) this.pending.delete(this.pending.keys().next().value!);
  }

  /**
   * A task announced that round `modelRound` of `runId` produced `modelSha256`: sign our receipt of
   * it, if any, once `after` (the run's end, for its final round) has settled and the round's usage
   * is measured. `final`: the run has no later round.
   */
  committed(runId: string, modelRound: number, modelSha256: string, final = false, after: Promise<unknown> = Promise.resolve()): void {
    const k = `${runId}/${modelRound}`;
    const c = this.pending.get(k);
    if (!c || this.inFlight.has(k) || !/^[0-9a-f]{64}$/.test(modelSha256) || !this.o.client()) return;
    let settle!: () => void;
    this.inFlight.set(k, new Promise<void>((r) => (settle = r)));
    const done = (): void => {
      this.inFlight.delete(k);
      settle();
    };
    void after
      .catch(() => undefined)
      .then(() => this.o.measure(c.allocation, c.foldedAllocations ?? [], final, AbortSignal.timeout(120_000)))
      .then(
        (usage) => this.submit(c, modelSha256, usage, done),
        (err: unknown) => {
          this.o.logger.warn({ round: modelRound, phase: 'commit', err: { message: (err as Error).message } }, 'usage of the round not measured: receipt not signed yet');
          done();
        },
      );
  }

  private submit(c: Contribution, modelSha256: string, usage: RoundUsage, done: () => void): void {
    const { runId, round: modelRound } = c;
    const k = `${runId}/${modelRound}`;
    const client = this.o.client();
    if (!client) return done();
    const fields = { federation: this.federation, runId, round: modelRound, site: this.o.site, parentSha256: c.parentSha256, modelSha256, dataManifestSha256: c.dataManifestSha256, usage, delta: c.delta };
    const signature = signReceipt(fields, this.key);
    const delta = c.delta ? { deltaSha256: c.delta.sha256, deltaParts: c.delta.parts.map((p) => ({ start: String(p.start), end: String(p.end), sha256: p.sha256 })) } : {};
    client.SubmitReceipt(
      { runId, round: String(modelRound), parentSha256: c.parentSha256, modelSha256, dataManifestSha256: c.dataManifestSha256, signature, usage: usageToWire(usage), ...delta },
      { deadline: Date.now() + 15_000 },
      (err: grpc.ServiceError | null) => {
        done();
        const log = this.o.logger.child({ round: modelRound, phase: 'commit' });
        // Kept on a transient failure (the coordinator unreachable or gone under the call, however
        // grpc-js told it): the same announcement comes again with the next task.
        if (err && (err.code === 14 /* UNAVAILABLE */ || droppedConnection(err))) return log.info({ err: { message: err.message } }, 'receipt not delivered yet');
        this.pending.delete(k);
        const notInvited = err !== null && classifyFailure(err).code === 'NOT_INVITED';
        if (!err || notInvited) this.o.onVerdict?.(c, !err);
        if (notInvited) log.info({ model: modelSha256 }, 'the round committed without this site\'s upload: no receipt');
        else if (err) log.warn({ err: { code: err.code, message: err.details } }, 'receipt refused by the coordinator');
        else log.info({ model: modelSha256, usage }, 'receipt of committed round signed and submitted');
      },
    );
  }

  /**
   * Resolves once every receipt in flight now has its answer: each waits for its usage (sacct: at
   * most a minute for a job's end to show; a round's job has ended by then) and 15 s for the answer.
   */
  async settled(): Promise<void> {
    await Promise.all([...this.inFlight.values()]);
  }
}
