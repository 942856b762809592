/**
 * One secure-aggregation attempt run in process: N site-side `SecureSession`s and the
 * coordinator-side `SecureRound` exchanging exactly the messages the gRPC services would carry
 * (the `__Output` shapes), masked uploads written to spool files in a temp folder by the site-side
 * `DeltaEncoder`, and the unmasked mean read back through `secureMean`. Every step is a method,
 * so a test can stop, drop a site or tamper with a message between any two of them.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, issueCertificate } from '../../coordinator/pki/index.js';
import { SecureRound, type SecureRoundParams, type SecureStage } from '../../coordinator/secure/round.js';
import { keyAdvertisementFromWire, sharesSubmissionFromWire, survivorSignatureFromWire, unmaskResponseFromWire } from '../../coordinator/service/wire.js';
import { secureMean } from '../../coordinator/secure/unmask.js';
import { openFileSource } from '../../common/files.js';
import type { KeyAdvertisement__Output, SharesSubmission__Output, UnmaskResponse__Output } from '../../proto/index.js';
import { DeltaEncoder } from '../../site-agent/encode.js';
import { createSafetensorsWriter, declaredCount, memorySink } from '../../aggregation/index.js';
import { SecureSession, type PeerAdvertisement, type SecureParams, type WireShare } from '../../site-agent/secure/session.js';

/** A deterministic randomBytes: AES-256-CTR keyed by SHA-256(label). Every byte it hands out is recorded. */
export function recordingRandom(label: string): { random: (n: number) => Uint8Array; drawn: Uint8Array[] } {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(label).digest(), Buffer.alloc(16));
  const drawn: Uint8Array[] = [];
  return {
    drawn,
    random: (n: number) => {
      const bytes = new Uint8Array(cipher.update(Buffer.alloc(n)));
      drawn.push(bytes.slice());
      return bytes;
    },
  };
}

/** A site's certificate and key (PEM), and the federation CA. */
export interface Identities {
  readonly caPem: string;
  readonly sites: ReadonlyMap<string, { readonly certPem: string; readonly keyPem: string }>;
}

/** A federation CA and one site certificate per id (OU `site`, CN = id). */
export async function makeIdentities(ids: readonly string[], federation = 'securefed'): Promise<Identities> {
  const now = new Date();
  const ca = await createCa({ federation, validityDays: 2, now });
  const sites = new Map<string, { certPem: string; keyPem: string }>();
  for (const id of ids) {
    const issued = await issueCertificate({ ca, role: 'site', id, federation, validityDays: 1, now });
    sites.set(id, { certPem: issued.certPem, keyPem: issued.keyPem ?? '' });
  }
  return { caPem: ca.certPem, sites };
}

/** Parameters of an in-process attempt; defaults are the coordinator config's. */
export interface InProcessOptions {
  readonly runId?: string;
  readonly round?: number;
  readonly attempt?: number;
  readonly threshold: number;
  readonly quantBits?: number;
  readonly modulusBits?: 16 | 32;
  readonly clip?: number;
  readonly maxSiteWeight?: number;
  readonly degree?: number;
  /** Label of the sites' seeded randomness (one stream per site); default: node:crypto's. */
  readonly seed?: string;
}

/** Writes `values` as one F32 tensor `delta` of a safetensors file at `path`. */
async function writeVector(path: string, values: Float32Array): Promise<void> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, [{ name: 'delta', dtype: 'F32', shape: [values.length] }]);
  await w.writeF32('delta', values);
  await w.finish();
  await writeFile(path, sink.bytes());
}

/**
 * The masked upload of `delta` for this attempt, made by the agent's own `DeltaEncoder` (the
 * secagg encoding of `params.modulusBits`): the global model is zeros and the trained one is
 * `delta`, so local − global is `delta` exactly. The site declares `samples` and 10 tokens a
 * sample (as the raw sites' headers do). `roundingSeed` fixes the stochastic rounding, as the
 * agent fixes it per attempt; random when not given.
 */
export async function encodeMasked(
  delta: Float32Array,
  session: SecureSession,
  params: SecureParams,
  samples: number,
  o: { chunkBytes?: number; roundingSeed?: Uint8Array } = {},
): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'fedhpc-masked-'));
  try {
    await writeVector(join(dir, 'global.safetensors'), new Float32Array(delta.length));
    await writeVector(join(dir, 'local.safetensors'), delta);
    const masked = { session, params, count: declaredCount(params.weighting, { samples, tokens: samples * 10 }), roundingSeed: o.roundingSeed ?? randomBytes(32) };
    const tensors = [{ name: 'delta', dtype: 'F32', shape: [delta.length] }];
    const enc = await DeltaEncoder.open(join(dir, 'global.safetensors'), join(dir, 'local.safetensors'), tensors, `secagg${params.modulusBits}`, masked);
    try {
      const parts: Buffer[] = [];
      for await (const c of enc.range(0, enc.totalBytes, o.chunkBytes ?? 1 << 16, new AbortController().signal)) parts.push(c.data);
      return Buffer.concat(parts);
    } finally {
      await enc.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Wire form of a site's advertisement, as `KeyAdvertisement__Output`. */
export function advertisementMessage(p: InProcessSecAgg, site: string): KeyAdvertisement__Output {
  const ad = p.sessions.get(site)!.advertisement();
  return {
    runId: p.runId,
    round: String(p.round),
    attempt: p.attempt,
    siteId: site,
    cPublicKey: Buffer.from(ad.cPk),
    sPublicKey: Buffer.from(ad.sPk),
    signature: Buffer.from(ad.signature),
    certificatePem: p.identities.sites.get(site)!.certPem,
  };
}

/** The attempt: sessions by site, the coordinator's round, and the spool folder. */
export class InProcessSecAgg {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly params: SecureParams;
  readonly sessions = new Map<string, SecureSession>();
  /** Every random byte each site drew (its keys, seeds, Shamir coefficients, nonces). */
  readonly drawn = new Map<string, Uint8Array[]>();
  readonly coordinator: SecureRound;
  /** The stage the round scheduler would be in: the test drives it, the coordinator's round reads it. */
  stage: SecureStage = 'keys';
  readonly spools = new Map<string, string>();
  /** The samples each site declared with its upload (its header's count). */
  readonly declared = new Map<string, number>();
  private dir: string | undefined;

  constructor(
    readonly identities: Identities,
    readonly o: InProcessOptions,
  ) {
    this.runId = o.runId ?? 'run-in-process';
    this.round = o.round ?? 1;
    this.attempt = o.attempt ?? 0;
    const roster = [...identities.sites.keys()].sort();
    const graphSeed = createHash('sha256').update(`graph-${o.seed ?? 'x'}`).digest();
    const params: SecureRoundParams = {
      threshold: o.threshold,
      quantBits: o.quantBits ?? 24,
      modulusBits: o.modulusBits ?? 32,
      clip: o.clip ?? 1,
      maxSiteWeight: o.maxSiteWeight ?? 1000,
      weighting: 'samples',
      graphSeed,
      degree: o.degree ?? 0,
      roster,
    };
    this.params = params;
    this.coordinator = new SecureRound({ runId: this.runId, round: this.round, attempt: this.attempt, params, caPem: identities.caPem, stage: () => this.stage });
    for (const site of roster) {
      const rec = o.seed === undefined ? undefined : recordingRandom(`${o.seed}/${site}`);
      if (rec) this.drawn.set(site, rec.drawn);
      const { keyPem } = identities.sites.get(site)!;
      this.sessions.set(
        site,
        new SecureSession({
          site,
          runId: this.runId,
          round: this.round,
          attempt: this.attempt,
          params,
          certificateKey: keyPem,
          caPem: identities.caPem,
          now: () => new Date(),
          ...(rec ? { randomBytes: rec.random } : {}),
        }),
      );
    }
  }

  get sites(): string[] {
    return [...this.sessions.keys()];
  }

  /** Round 0: `sites` advertise their signed keys to the coordinator. */
  keys(sites: readonly string[] = this.sites): void {
    for (const site of sites) this.coordinator.advertise(site, keyAdvertisementFromWire(advertisementMessage(this, site)));
  }

  /** What the coordinator relays in the `shares` task: every stored advertisement. */
  relayedAdvertisements(): PeerAdvertisement[] {
    return [...this.coordinator.adverts.values()].map((a) => ({ site: a.site, cPk: a.cPk, sPk: a.sPk, signature: a.signature, certificatePem: a.certificatePem }));
  }

  /** Round 1: `sites` verify the relayed advertisements and submit sealed shares. Returns them. */
  shares(sites: readonly string[] = [...this.coordinator.adverts.keys()]): Map<string, WireShare[]> {
    this.stage = 'shares';
    const adverts = this.relayedAdvertisements();
    const out = new Map<string, WireShare[]>();
    for (const site of sites) {
      const shares = this.sessions.get(site)!.shares(adverts);
      out.set(site, shares);
      this.coordinator.submitShares(site, sharesSubmissionFromWire(sharesMessage(this, shares)));
    }
    return out;
  }

  /** Training: the coordinator fixes U2 = `holders`; each holder opens the shares sealed for it. */
  deliverShares(holders: readonly string[] = [...this.coordinator.shares.keys()]): void {
    this.stage = 'closed';
    this.coordinator.holders = [...holders].sort();
    for (const site of holders) {
      const shares = this.coordinator.sharesFor(site).map((s) => ({ from: s.from, to: s.to, nonce: s.nonce, ciphertext: s.ciphertext }));
      this.sessions.get(site)!.receiveShares(shares, this.coordinator.holders);
    }
  }

  /** Upload: the site's masked vector (through the agent's `DeltaEncoder`), spooled to a file. */
  async upload(site: string, delta: Float32Array, samples: number, chunkElements = 4099): Promise<string> {
    this.dir ??= await mkdtemp(join(tmpdir(), 'fedhpc-secure-'));
    const bytes = await encodeMasked(delta, this.sessions.get(site)!, this.params, samples, { chunkBytes: chunkElements * (this.params.modulusBits / 8) });
    const path = join(this.dir, `${site}.delta`);
    await writeFile(path, bytes);
    this.spools.set(site, path);
    this.declared.set(site, samples);
    return path;
  }

  /** Consistency check: the coordinator announces U3 and the dropped holders; `signers` sign. */
  consistency(survivors: readonly string[], dropped: readonly string[], signers: readonly string[] = survivors): void {
    this.stage = 'consistency';
    this.coordinator.survivors = [...survivors].sort();
    this.coordinator.dropped = [...dropped].sort();
    for (const site of signers) {
      const signature = this.sessions.get(site)!.signSurvivors(this.coordinator.survivors, this.coordinator.dropped);
      this.coordinator.signSurvivors(site, survivorSignatureFromWire({ runId: this.runId, round: String(this.round), attempt: this.attempt, siteId: site, signature: Buffer.from(signature) }));
    }
  }

  /** The unmask request's signatures, as the coordinator relays them. */
  relayedSignatures(): { site: string; signature: Uint8Array }[] {
    return [...this.coordinator.signatures.entries()].map(([site, signature]) => ({ site, signature }));
  }

  /** Round 3: `sites` reveal their shares to the coordinator (what the unmask request asks). */
  reveal(sites: readonly string[] = [...this.coordinator.signatures.keys()]): void {
    this.stage = 'reveal';
    for (const site of sites) {
      const shares = this.sessions.get(site)!.reveal(this.coordinator.survivors, this.coordinator.dropped, this.relayedSignatures());
      this.coordinator.revealShares(site, unmaskResponseFromWire(revealMessage(this, shares)));
    }
  }

  /** The unmasked weighted mean over the survivors' spools (the coordinator's `aggregate`). */
  async mean(elements: number): Promise<Float32Array> {
    this.stage = 'closed';
    const paths = this.coordinator.survivors.map((s) => this.spools.get(s)!);
    const source = await secureMean(this.coordinator, paths, this.declared, elements, openFileSource);
    try {
      return await source.read(0, elements);
    } finally {
      await source.close();
    }
  }

  async cleanup(): Promise<void> {
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

/** Wire form of a site's sealed shares, as `SharesSubmission__Output`. */
export function sharesMessage(p: InProcessSecAgg, shares: readonly WireShare[]): SharesSubmission__Output {
  return {
    runId: p.runId,
    round: String(p.round),
    attempt: p.attempt,
    shares: shares.map((s) => ({ fromSite: s.from, toSite: s.to, nonce: Buffer.from(s.nonce), ciphertext: Buffer.from(s.ciphertext) })),
  };
}

/** Wire form of revealed shares, as `UnmaskResponse__Output`. */
export function revealMessage(p: InProcessSecAgg, shares: readonly { owner: string; kind: string; x: number; y: Uint8Array }[]): UnmaskResponse__Output {
  return { runId: p.runId, round: String(p.round), attempt: p.attempt, shares: shares.map((s) => ({ owner: s.owner, kind: s.kind, x: s.x, y: Buffer.from(s.y) })) };
}

/** A deterministic pseudo-gradient: Gaussian (Box–Muller on AES-CTR words) with RMS `rms`, clipped at `absmax`. */
export function pseudoGradient(n: number, rms: number, absmax: number, label: string): Float32Array {
  const { random } = recordingRandom(`gradient/${label}`);
  const bytes = random(8 * n);
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, 2 * n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = (w[2 * i]! + 1) / 2 ** 32;
    const u2 = w[2 * i + 1]! / 2 ** 32;
    const g = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2) * rms;
    out[i] = Math.max(-absmax, Math.min(absmax, g));
  }
  return out;
}

/** Root mean square of `v`. */
export function rmsOf(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! ** 2;
  return Math.sqrt(s / v.length);
}
