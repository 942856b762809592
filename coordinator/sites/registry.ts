/**
 * Site registry: who has joined, who is connected (holds an open `Tasks` stream), what each is
 * doing, and the channel to push tasks to it. Holds no protobuf: the service converts tasks.
 */
import type { SecureRoundParams, StoredAdvertisement, StoredShare } from '../secure/round.js';
import type { LayoutTensor } from '../upload/header.js';

/** Work pushed to a site over its `Tasks` stream. */
export type SiteTask =
  | {
      readonly kind: 'train';
      readonly runId: string;
      readonly round: number;
      readonly attempt: number;
      readonly model: { readonly sha256: string; readonly sizeBytes: number };
      readonly modelRound: number;
      readonly tensors: readonly LayoutTensor[];
      readonly encoding: string;
      readonly train: Readonly<Record<string, unknown>>;
      readonly trainingDeadlineMs: number;
      readonly uploadDeadlineMs: number;
      readonly maxChunkBytes: number;
      /** Upload streams the site may hold open at once. */
      readonly maxStreams?: number;
      /** Most rounds an upload's base may lie behind `modelRound` (`run.maxStaleness`). */
      readonly maxStaleness?: number;
      /** `run.weighting` and `run.maxSiteWeight`: what a folding site mixes its parts by. */
      readonly weighting?: string;
      readonly maxSiteWeight?: number;
      readonly evaluate: boolean;
      /** Secure rounds: shares sealed for this site, and the sites that completed the exchange. */
      readonly shares: readonly StoredShare[];
      readonly shareHolders: readonly string[];
    }
  | {
      readonly kind: 'eval';
      readonly runId: string;
      readonly model: { readonly sha256: string; readonly sizeBytes: number };
      readonly modelRound: number;
      readonly deadlineMs: number;
    }
  | { readonly kind: 'finished'; readonly runId: string; readonly model: { readonly sha256: string; readonly sizeBytes: number }; readonly modelRound: number }
  | { readonly kind: 'cancel'; readonly runId: string; readonly round: number; readonly attempt: number; readonly reason: string }
  | { readonly kind: 'keys'; readonly runId: string; readonly round: number; readonly attempt: number; readonly params: SecureRoundParams }
  | { readonly kind: 'shares'; readonly runId: string; readonly round: number; readonly attempt: number; readonly adverts: readonly StoredAdvertisement[] }
  | {
      readonly kind: 'consistency' | 'unmask';
      readonly runId: string;
      readonly round: number;
      readonly attempt: number;
      readonly survivors: readonly string[];
      readonly dropped: readonly string[];
      readonly signatures: readonly { readonly site: string; readonly signature: Uint8Array }[];
    };

/** What one site did in a committed round: work, staleness, busy fraction (issue 16). */
export interface ContributionStats {
  readonly round: number;
  readonly tokens: number;
  readonly steps: number;
  /** Rounds its fresh part's base lay behind the round's model. */
  readonly staleness: number;
  /** Earlier work folded in: parts and what they counted. */
  readonly foldedParts: number;
  readonly foldedCount: number;
  /** Overlapped rounds: inner steps between its previous snapshot and the step that applied the round's model (0 otherwise). */
  readonly appliedStaleness: number;
  /** Time training over the time it had (coordinator/observe/busy.ts); undefined when the site reported no span. */
  readonly busyFraction: number | undefined;
}

/** What the registry knows about one site. */
export interface SiteRecord {
  readonly id: string;
  fingerprint: string;
  /** When the certificate the site joined with expires (epoch ms), for the dashboard. */
  certificateNotAfterMs?: number;
  agentVersion: string;
  joinedAtMs: number;
  lastSeenMs: number;
  activity: string;
  progress: number;
  bytesUp: number;
  bytesDown: number;
  /** Upload bytes verified in an earlier attempt and kept for a later one, never sent again (upload/reuse.ts). */
  bytesReused: number;
  roundsContributed: number;
  /** The last committed round this site took part in since the coordinator started (budgeted rounds). */
  lastRound?: ContributionStats;
  /** The transfer the site reported last (heartbeats), while one runs. */
  transfer?: { direction: 'upload' | 'download'; bytes: number; total: number; rateBytesPerS: number; etaS: number; updatedAt: number };
  /** Set while the site holds an open `Tasks` stream. */
  deliver: ((task: SiteTask) => void) | undefined;
  /** Ends the open stream (when replaced by a newer one). */
  close: (() => void) | undefined;
  /** Aborts in-flight uploads of this site (on cancel). */
  readonly uploads: Set<AbortController>;
}

/** The set of sites known to this coordinator process. */
export class SiteRegistry {
  private readonly sites = new Map<string, SiteRecord>();
  constructor(private readonly now: () => number) {}

  /** Records a `Join`; returns the site's record. */
  join(id: string, fingerprint: string, agentVersion: string): SiteRecord {
    const existing = this.sites.get(id);
    const site = existing ?? {
      id,
      fingerprint,
      agentVersion,
      joinedAtMs: this.now(),
      lastSeenMs: this.now(),
      activity: 'joined',
      progress: -1,
      bytesUp: 0,
      bytesDown: 0,
      bytesReused: 0,
      roundsContributed: 0,
      deliver: undefined,
      close: undefined,
      uploads: new Set<AbortController>(),
    };
    site.fingerprint = fingerprint;
    site.agentVersion = agentVersion;
    site.lastSeenMs = this.now();
    this.sites.set(id, site);
    return site;
  }

  get(id: string): SiteRecord | undefined {
    return this.sites.get(id);
  }

  /** All known sites, sorted by id. */
  list(): SiteRecord[] {
    return [...this.sites.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  connected(): string[] {
    return this.list()
      .filter((s) => s.deliver !== undefined)
      .map((s) => s.id);
  }

  /**
   * Attaches a new task stream. An older stream of the same site is closed first (an agent that
   * reconnected before the old connection timed out). Returns the function that detaches it.
   */
  attach(id: string, deliver: (task: SiteTask) => void, close: () => void): () => boolean {
    const site = this.sites.get(id);
    if (!site) throw new Error(`site ${id} attaches a stream before joining`);
    const previous = site.close;
    site.deliver = deliver;
    site.close = close;
    previous?.();
    return () => {
      if (site.deliver !== deliver) return false;
      site.deliver = undefined;
      site.close = undefined;
      return true;
    };
  }

  /** Pushes a task; false when the site has no open stream. */
  send(id: string, task: SiteTask): boolean {
    const site = this.sites.get(id);
    if (!site?.deliver) return false;
    site.deliver(task);
    return true;
  }

  touch(id: string, activity?: string, progress?: number): void {
    const site = this.sites.get(id);
    if (!site) return;
    site.lastSeenMs = this.now();
    if (activity !== undefined) site.activity = activity;
    if (progress !== undefined) site.progress = progress;
    this.onTouch?.(id, site.activity, site.progress);
  }

  /** Called on every heartbeat (the site logs of `admin logs`). */
  onTouch: ((id: string, activity: string, progress: number) => void) | undefined;
}
