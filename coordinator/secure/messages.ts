/**
 * The SecAgg+ stage messages as the coordinator's secure round works on them: checked and converted
 * from the wire by `coordinator/service/wire.ts` (round numbers are safe integers here), so nothing
 * behind the service edge handles a generated protobuf type.
 */

/** The attempt a stage message is for. */
export interface AttemptRef {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
}

/** Round 0: a site's signed public keys (Bonawitz et al. 2017, AdvertiseKeys). */
export interface KeyAdvertisement extends AttemptRef {
  readonly siteId: string;
  readonly cPublicKey: Buffer;
  readonly sPublicKey: Buffer;
  readonly signature: Buffer;
  readonly certificatePem: string;
}

/** One share sealed by `fromSite` for `toSite` (AES-GCM: a 12-byte nonce, tag included in the ciphertext). */
export interface SealedShare {
  readonly fromSite: string;
  readonly toSite: string;
  readonly nonce: Buffer;
  readonly ciphertext: Buffer;
}

/** Round 1: a site's sealed shares, one per neighbour. */
export interface SharesSubmission extends AttemptRef {
  readonly shares: readonly SealedShare[];
}

/** Consistency check: a survivor's signature over the survivor list. */
export interface SurvivorSignature extends AttemptRef {
  readonly siteId: string;
  readonly signature: Buffer;
}

/** One Shamir share revealed at unmask: of a survivor's self seed or of a dropped site's mask key. */
export interface RevealedShare {
  readonly owner: string;
  /** As sent; the secure round accepts only `self_seed` and `mask_key`, and only where allowed. */
  readonly kind: string;
  readonly x: number;
  readonly y: Buffer;
}

/** Round 3: the shares one signer reveals. */
export interface UnmaskResponse extends AttemptRef {
  readonly shares: readonly RevealedShare[];
}

/** Handlers of the SecAgg+ stage RPCs for one calling site; each returns the empty Ack or throws. */
export interface SecureStageHandlers {
  advertise(m: KeyAdvertisement): Record<string, never>;
  submitShares(m: SharesSubmission): Record<string, never>;
  signSurvivors(m: SurvivorSignature): Record<string, never>;
  revealShares(m: UnmaskResponse): Record<string, never>;
}
