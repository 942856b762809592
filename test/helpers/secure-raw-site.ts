/**
 * A raw site that takes part in a secure round honestly — keys, shares, a masked upload, the
 * consistency signature and the reveal, all with the agent's own `SecureSession` and
 * `DeltaEncoder` — one step per method, so a test decides what it sends at each step and can
 * misbehave at exactly one of them. It holds a real site certificate of the federation; its
 * randomness is recorded, so a test knows every secret it drew.
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import {
  type ConsistencyTask__Output,
  type KeyAdvertisement,
  type KeysTask__Output,
  type SharesSubmission,
  type SharesTask__Output,
  type SiteServiceClient,
  type Task__Output,
  type TrainTask__Output,
  type UnmaskResponse,
  type UnmaskTask__Output,
  type UploadMessage,
  type UploadResult__Output,
} from '../../proto/index.js';
import { SiteAgentError } from '../../site-agent/errors.js';
import { SecureSession, type SecureParams } from '../../site-agent/secure/session.js';
import type { TestFederation } from './federation.js';
import { RawSiteClient, chunkMessages, completeUpload, refusal, runUploadStream, sha256Hex, siteCertFiles, type CallOutcome, type Refusal } from './raw-site.js';
import { encodeMasked, recordingRandom } from './secure-protocol.js';

/** Task kinds a secure round sends. */
export type TaskKind = NonNullable<Task__Output['kind']>;

/** Round/attempt of any secure task, as a key. */
export function taskKey(t: { runId: string; round: string; attempt: number }): string {
  return `${t.runId}/${Number(t.round)}.${t.attempt}`;
}

/** A secure-aggregation participant built from a real site certificate. */
export class SecureRawSite {
  readonly tasks: Task__Output[] = [];
  /** Every random byte its sessions drew (keys, self seeds, Shamir coefficients, nonces). */
  readonly drawn: Uint8Array[];
  /** The shares it revealed, per attempt key. */
  readonly revealed = new Map<string, { owner: string; kind: string; x: number; y: Uint8Array }[]>();
  /** Sessions by attempt key. */
  readonly sessions = new Map<string, { session: SecureSession; params: SecureParams }>();
  ended: grpc.ServiceError | 'end' | undefined;
  private readonly raw: RawSiteClient;
  private readonly client: SiteServiceClient;
  private stream: grpc.ClientReadableStream<Task__Output> | undefined;
  private readonly waiters = new Set<() => void>();
  private readonly taken = new Set<Task__Output>();
  private readonly random: (n: number) => Uint8Array;
  private readonly keyPem: string;
  private readonly certPem: string;
  private readonly caPem: string;

  constructor(
    readonly fed: TestFederation,
    readonly site: string,
    label = `raw-${site}`,
  ) {
    const files = siteCertFiles(fed, site);
    this.keyPem = readFileSync(files.key, 'utf8');
    this.certPem = readFileSync(files.cert, 'utf8');
    this.caPem = readFileSync(files.ca, 'utf8');
    this.raw = new RawSiteClient({ address: fed.address, files });
    this.client = this.raw.client;
    const rec = recordingRandom(label);
    this.random = rec.random;
    this.drawn = rec.drawn;
  }

  /** Joins and opens the task stream (the coordinator then counts it as connected). */
  async connect(): Promise<void> {
    const joined = await this.raw.join({ siteId: this.site, agentVersion: 'secure-raw-site' });
    if (!joined.ok) throw joined.error;
    const call = this.client.Tasks({}, { deadline: Infinity });
    call.on('data', (t: Task__Output) => {
      this.tasks.push(t);
      this.wake();
    });
    call.on('error', (err: grpc.ServiceError) => {
      this.ended ??= err;
      this.wake();
    });
    call.on('end', () => {
      this.ended ??= 'end';
      this.wake();
    });
    this.stream = call;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /**
   * The first task of `kind` (not returned before) matching `match`. Rejects with {@link Abandoned}
   * when `current` is given and the coordinator moved past it (a cancel for it, or a task of a
   * later attempt or round), and with an Error when the stream ends or `timeoutMs` passes.
   */
  next<K extends TaskKind>(
    kind: K,
    match: (t: NonNullable<Task__Output[K]>) => boolean = () => true,
    current?: { round: number; attempt: number },
    timeoutMs = 60_000,
  ): Promise<NonNullable<Task__Output[K]>> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const i = this.tasks.findIndex((t) => t.kind === kind && t[kind] && !this.taken.has(t) && match(t[kind] as NonNullable<Task__Output[K]>));
        if (i >= 0) {
          this.taken.add(this.tasks[i]!);
          done();
          resolve(this.tasks[i]![kind] as NonNullable<Task__Output[K]>);
          return;
        }
        const past = current && this.tasks.find((t) => movedPast(t, current));
        if (past) {
          done();
          reject(new Abandoned(`${this.site}: round ${current!.round}.${current!.attempt} is over (${past.kind})`));
        } else if (this.ended) {
          done();
          reject(new Error(`${this.site}: task stream ended while waiting for a ${kind} task`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.site}: no ${kind} task within ${timeoutMs} ms (got: ${this.tasks.map((t) => t.kind).join(', ')})`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Round 0: makes this attempt's session and returns its honest advertisement (not yet sent). */
  keys(t: KeysTask__Output): KeyAdvertisement {
    const p = t.params!;
    const params: SecureParams = {
      threshold: p.threshold,
      quantBits: p.quantBits,
      modulusBits: p.modulusBits === 16 ? 16 : 32,
      clip: p.clip,
      maxSiteWeight: p.maxWeight,
      weighting: p.weighting === 'tokens' || p.weighting === 'uniform' ? p.weighting : 'samples',
      graphSeed: p.graphSeed,
      degree: p.degree,
      roster: p.roster,
    };
    const session = new SecureSession({
      site: this.site,
      runId: t.runId,
      round: Number(t.round),
      attempt: t.attempt,
      params,
      certificateKey: this.keyPem,
      caPem: this.caPem,
      now: () => new Date(),
      randomBytes: this.random,
    });
    this.sessions.set(taskKey(t), { session, params });
    const ad = session.advertisement();
    return { runId: t.runId, round: t.round, attempt: t.attempt, siteId: this.site, cPublicKey: ad.cPk, sPublicKey: ad.sPk, signature: ad.signature, certificatePem: this.certPem };
  }

  private session(t: { runId: string; round: string; attempt: number }): { session: SecureSession; params: SecureParams } {
    const s = this.sessions.get(taskKey(t));
    if (!s) throw new Error(`${this.site}: no session for ${taskKey(t)}`);
    return s;
  }

  /** Round 1: verifies the relayed advertisements (throws as the agent would) and returns the sealed shares. */
  shares(t: SharesTask__Output): SharesSubmission {
    const wire = this.session(t).session.shares(
      t.advertisements.map((a) => ({ site: a.siteId, cPk: a.cPublicKey, sPk: a.sPublicKey, signature: a.signature, certificatePem: a.certificatePem })),
    );
    return { runId: t.runId, round: t.round, attempt: t.attempt, shares: wire.map((x) => ({ fromSite: x.from, toSite: x.to, nonce: x.nonce, ciphertext: x.ciphertext })) };
  }

  /** Training: opens the shares sealed for this site (throws as the agent would). */
  receiveShares(t: TrainTask__Output): void {
    this.session(t).session.receiveShares(
      t.shares.map((x) => ({ from: x.fromSite, to: x.toSite, nonce: x.nonce, ciphertext: x.ciphertext })),
      t.shareHolders,
    );
  }

  /** The masked bytes of `delta` (f32, the task's tensor order) for this attempt. */
  async masked(t: TrainTask__Output, delta: Float32Array, samples: number): Promise<Buffer> {
    const { session, params } = this.session(t);
    return encodeMasked(delta, session, params, samples);
  }

  /** A complete upload of masked bytes: header (secagg encoding), chunks, trailer. */
  uploadMessages(t: TrainTask__Output, masked: Buffer, samples: number, header: Record<string, unknown> = {}): UploadMessage[] {
    return [
      {
        header: {
          runId: t.runId,
          round: t.round,
          attempt: t.attempt,
          baseModelSha256: t.globalModel?.sha256 ?? '',
          encoding: { name: t.encoding?.name ?? 'secagg32' },
          tensors: t.tensors.map((x) => ({ name: x.name, dtype: x.dtype, shape: [...x.shape] })),
          totalBytes: masked.length,
          samples,
          tokens: samples * 10,
          steps: 1,
          trainLoss: 1,
          dataManifestSha256: '',
          ...header,
        },
      },
      ...chunkMessages(masked, t.maxChunkBytes || 1 << 20),
      { trailer: { sha256: sha256Hex(masked) } },
    ];
  }

  /** Consistency check: this site's signature over the announced list (throws as the agent would). */
  sign(t: ConsistencyTask__Output): Uint8Array {
    return this.session(t).session.signSurvivors(t.survivors, t.dropped);
  }

  /** Round 3: the shares this site reveals for the request (throws as the agent would). */
  reveal(t: UnmaskTask__Output): UnmaskResponse {
    const shares = this.session(t).session.reveal(t.survivors, t.dropped, t.signatures.map((x) => ({ site: x.siteId, signature: x.signature })));
    this.revealed.set(taskKey(t), shares);
    return { runId: t.runId, round: t.round, attempt: t.attempt, shares };
  }

  // ------------------------------------------------------------------ RPCs, each returning its outcome

  advertise(m: KeyAdvertisement): Promise<CallOutcome<unknown>> {
    return this.unary((cb) => this.client.AdvertiseKeys(m, { deadline: Date.now() + 15_000 }, cb));
  }
  submitShares(m: SharesSubmission): Promise<CallOutcome<unknown>> {
    return this.unary((cb) => this.client.SubmitShares(m, { deadline: Date.now() + 15_000 }, cb));
  }
  signSurvivors(t: ConsistencyTask__Output, signature: Uint8Array): Promise<CallOutcome<unknown>> {
    return this.unary((cb) => this.client.SignSurvivors({ runId: t.runId, round: t.round, attempt: t.attempt, siteId: this.site, signature }, { deadline: Date.now() + 15_000 }, cb));
  }
  revealShares(m: UnmaskResponse): Promise<CallOutcome<unknown>> {
    return this.unary((cb) => this.client.RevealShares(m, { deadline: Date.now() + 15_000 }, cb));
  }
  reportFailure(t: { runId: string; round: string; attempt: number }, code: string, message: string): Promise<CallOutcome<unknown>> {
    return this.unary((cb) => this.client.ReportFailure({ runId: t.runId, round: t.round, attempt: t.attempt, code, message, retryable: false }, { deadline: Date.now() + 15_000 }, cb));
  }

  /** Sends an upload stream message by message (waiting for 'drain'), then half-closes. */
  async upload(messages: readonly UploadMessage[]): Promise<CallOutcome<UploadResult__Output>> {
    // The bidirectional Upload stream; CRC32C and tensor digests are filled in when left unset.
    return (await runUploadStream(this.client, completeUpload(messages), 30_000)).outcome;
  }

  private unary(f: (cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void): Promise<CallOutcome<unknown>> {
    return new Promise((resolve) => f((err, res) => resolve(err ? { ok: false, error: err } : { ok: true, value: res })));
  }

  close(): void {
    this.stream?.cancel();
    this.client.close();
  }
}

/** The refusal of an outcome that must have failed (fails the test when it succeeded). */
export function refused(outcome: CallOutcome<unknown>): Refusal {
  return refusal(outcome);
}

/** Thrown by {@link SecureRawSite.next} when the attempt it waits in is over. */
export class Abandoned extends Error {}

function movedPast(t: Task__Output, cur: { round: number; attempt: number }): boolean {
  const body = t.kind ? (t[t.kind] as { round?: string; attempt?: number; runId?: string } | null | undefined) : undefined;
  if (!body || body.round === undefined) return false;
  const round = Number(body.round);
  if (t.kind === 'cancel') return round === cur.round && body.attempt === cur.attempt;
  return t.kind !== 'eval' && (round > cur.round || (round === cur.round && (body.attempt ?? 0) > cur.attempt));
}

/**
 * What a raw site does at each step of one attempt; each hook receives the honest message (or
 * bytes) and returns what to send. A hook may also send extra calls through `site` itself.
 * Returning `'silent'` sends nothing (the site goes quiet for the rest of the attempt); `'sent'`
 * means the hook sent its own message and the site goes on.
 */
export interface Behaviour {
  readonly delta: (t: TrainTask__Output) => Float32Array;
  readonly samples: number;
  advertise?(m: KeyAdvertisement, ctx: StepContext): Promise<KeyAdvertisement | 'silent'> | KeyAdvertisement | 'silent';
  submitShares?(m: SharesSubmission, ctx: StepContext): Promise<SharesSubmission | 'silent' | 'sent'> | SharesSubmission | 'silent' | 'sent';
  upload?(messages: UploadMessage[], ctx: StepContext & { train: TrainTask__Output; masked: Buffer }): Promise<UploadMessage[] | 'silent'> | UploadMessage[] | 'silent';
  beforeSign?(ctx: StepContext & { consistency: ConsistencyTask__Output }): Promise<void> | void;
  reveal?(m: UnmaskResponse, ctx: StepContext & { unmask: UnmaskTask__Output }): Promise<UnmaskResponse | 'silent' | 'sent'> | UnmaskResponse | 'silent' | 'sent';
}

/** Where a hook is called: the site and the attempt. */
export interface StepContext {
  readonly site: SecureRawSite;
  readonly round: number;
  readonly attempt: number;
}

/** How one attempt ended for a participating raw site. */
export interface AttemptOutcome {
  readonly attempt: number;
  /** 'revealed': it took part to the end; 'refused': its own checks refused a step (reported, as the agent does); 'dropped': the attempt moved on without it; 'silent': a hook chose silence. */
  readonly outcome: 'revealed' | 'refused' | 'dropped' | 'silent';
  /** The refusal of its own checks, or the coordinator's refusal of a call. */
  readonly reason?: string;
  /** Refusals the coordinator answered (gRPC details), in order. */
  readonly refusals: string[];
}

/**
 * Takes part in every attempt of `round` as the agent would — a refusal of its own checks is
 * reported with ReportFailure and ends its part in that attempt — until `until` resolves (the
 * round committed). Resolves with what happened in each attempt.
 */
export async function participate(site: SecureRawSite, round: number, behaviour: Behaviour | ((attempt: number) => Behaviour), until: Promise<unknown>): Promise<AttemptOutcome[]> {
  const outcomes: AttemptOutcome[] = [];
  let attempt = -1;
  let over = false;
  void until.then(() => {
    over = true;
  });
  while (!over) {
    const k = await Promise.race([site.next('keys', (t) => Number(t.round) === round && t.attempt > attempt, undefined, 120_000), until.then(() => undefined)]);
    if (!k) break;
    attempt = k.attempt;
    const b = typeof behaviour === 'function' ? behaviour(attempt) : behaviour;
    const o = await oneAttempt(site, k, b);
    outcomes.push(o);
  }
  return outcomes;
}

async function oneAttempt(site: SecureRawSite, k: KeysTask__Output, b: Behaviour): Promise<AttemptOutcome> {
  const round = Number(k.round);
  const attempt = k.attempt;
  const cur = { round, attempt };
  const ctx: StepContext = { site, round, attempt };
  const refusals: string[] = [];
  const same = (t: { round: string; attempt: number }): boolean => Number(t.round) === round && t.attempt === attempt;
  const send = async (p: Promise<CallOutcome<unknown>>): Promise<void> => {
    const r = await p;
    if (!r.ok) refusals.push(r.error.details);
  };
  let step = 'keys';
  try {
    const ad = b.advertise ? await b.advertise(site.keys(k), ctx) : site.keys(k);
    if (ad === 'silent') return { attempt, outcome: 'silent', refusals };
    await send(site.advertise(ad));
    step = 'shares';
    const s = await site.next('shares', same, cur);
    const honestShares = site.shares(s);
    const sub = b.submitShares ? await b.submitShares(honestShares, ctx) : honestShares;
    if (sub === 'silent') return { attempt, outcome: 'silent', refusals };
    if (sub !== 'sent') await send(site.submitShares(sub));
    step = 'training';
    const t = await site.next('train', same, cur);
    site.receiveShares(t);
    step = 'upload';
    const masked = await site.masked(t, b.delta(t), b.samples);
    const honestUpload = site.uploadMessages(t, masked, b.samples);
    const up = b.upload ? await b.upload(honestUpload, { ...ctx, train: t, masked }) : honestUpload;
    if (up === 'silent') return { attempt, outcome: 'silent', refusals };
    await send(site.upload(up));
    step = 'consistency';
    const c = await site.next('consistency', same, cur);
    await b.beforeSign?.({ ...ctx, consistency: c });
    await send(site.signSurvivors(c, site.sign(c)));
    step = 'unmask';
    const u = await site.next('unmask', same, cur);
    const honestReveal = site.reveal(u);
    const rev = b.reveal ? await b.reveal(honestReveal, { ...ctx, unmask: u }) : honestReveal;
    if (rev === 'silent') return { attempt, outcome: 'silent', refusals };
    if (rev !== 'sent') await send(site.revealShares(rev));
    return { attempt, outcome: 'revealed', refusals };
  } catch (err) {
    if (err instanceof Abandoned) return { attempt, outcome: 'dropped', reason: `${step}: ${err.message}`, refusals };
    if (err instanceof SiteAgentError) {
      // As the agent does (site-agent/agent.ts secureStage / reportFailure): report and stop.
      await site.reportFailure({ runId: k.runId, round: k.round, attempt }, err.code, err.message);
      return { attempt, outcome: 'refused', reason: `${step}: ${err.message}`, refusals };
    }
    throw err;
  }
}

/** Throws (with the coordinator's answer) unless the call succeeded. */
export function expectOk(outcome: CallOutcome<unknown>, what: string): void {
  if (!outcome.ok) throw new Error(`${what} refused: ${outcome.error.details}`);
}
