/**
 * The in-process event bus: lifecycle events with one typed body per kind. Subscribers are called
 * synchronously and must not throw; the admin `Events` stream and (later) NATS hang off it.
 */
import type { PhaseName } from './round/types.js';

/** Evaluation of one site for one model. */
export interface SiteEvalBody {
  readonly site: string;
  readonly loss: number;
  readonly samples: number;
}

/** Every event kind with its body. */
export interface EventBodies {
  'site.joined': { site: string; agentVersion: string; fingerprint: string };
  'site.left': { site: string };
  'run.started': { runId: string; rounds: number; nextRound: number; strategy: string };
  'round.opened': { runId: string; round: number; attempt: number };
  'phase.changed': { runId: string; round: number; attempt: number; phase: PhaseName; deadlineMs: number };
  'upload.done': { runId: string; round: number; attempt: number; site: string; bytes: number; weight: number };
  'site.dropped': { runId: string; round: number; attempt: number; site: string; reason: string };
  'round.committed': {
    runId: string;
    round: number;
    attempt: number;
    participants: string[];
    dropped: string[];
    modelSha256: string;
    bytesUp: number;
    bytesDown: number;
    seconds: number;
  };
  'round.aborted': { runId: string; round: number; attempt: number; reason: string };
  'round.evaluated': { runId: string; modelRound: number; modelSha256: string; loss: number; samples: number; sites: SiteEvalBody[] };
  'run.finished': { runId: string; rounds: number; modelSha256: string };
  'run.failed': { runId: string; reason: string };
}

export type EventKind = keyof EventBodies;

export interface BusEvent<K extends EventKind = EventKind> {
  readonly kind: K;
  readonly ts: number;
  readonly body: EventBodies[K];
}

type Listener = (event: BusEvent) => void;

/** A synchronous fan-out of events to subscribers. */
export class EventBus {
  private readonly listeners = new Set<Listener>();
  constructor(private readonly now: () => number = Date.now) {}

  emit<K extends EventKind>(kind: K, body: EventBodies[K]): void {
    const event: BusEvent<K> = { kind, ts: this.now(), body };
    for (const l of this.listeners) l(event as BusEvent);
  }

  /** Subscribes; returns the function that unsubscribes. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
