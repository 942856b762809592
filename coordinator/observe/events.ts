/**
 * The in-process event bus: lifecycle events with one typed body per kind. Subscribers are called
 * synchronously and must not throw; the admin `Events` stream and the NATS publisher hang off it.
 *
 * Each kind's body is defined by a zod schema, exported so that consumers of the NATS subjects
 * (`<prefix>.events.<kind>`) and tests validate exactly what the coordinator promises to send.
 */
import { z } from 'zod';
import { SECURE_PHASES } from '../round/types.js';

const id = z.string().min(1);
const count = z.number().int().nonnegative();
const round = z.number().int().positive();
const attempt = count;
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const roundRef = { runId: id, round, attempt };

/** Evaluation of one site for one model. */
export const siteEvalBodySchema = z.object({ site: id, loss: z.number(), samples: count }).strict();
export type SiteEvalBody = z.infer<typeof siteEvalBodySchema>;

/** One zod schema per event kind: the body published for it. */
export const eventBodySchemas = {
  'site.joined': z.object({ site: id, agentVersion: z.string(), fingerprint: z.string() }).strict(),
  'site.left': z.object({ site: id }).strict(),
  /** An admin approved a site's enrolment (its certificate's fingerprint, the approving admin). */
  'site.approved': z.object({ site: id, fingerprint: z.string(), admin: z.string() }).strict(),
  /** An admin revoked a site: it is refused from its next call on. */
  'site.revoked': z.object({ site: id, fingerprint: z.string(), admin: z.string(), reason: z.string() }).strict(),
  'run.started': z.object({ runId: id, rounds: round, nextRound: round, strategy: z.string() }).strict(),
  'round.opened': z.object(roundRef).strict(),
  'phase.changed': z.object({ ...roundRef, phase: z.enum(SECURE_PHASES), deadlineMs: z.number() }).strict(),
  /** Bytes of a site's upload received so far (throttled by the emitter). */
  'upload.progress': z.object({ ...roundRef, site: id, bytes: count, totalBytes: count }).strict(),
  'upload.done': z.object({ ...roundRef, site: id, bytes: count, weight: z.number() }).strict(),
  'site.dropped': z.object({ runId: z.string(), round, attempt, site: id, reason: z.string() }).strict(),
  'round.committed': z
    .object({
      ...roundRef,
      participants: z.array(id),
      dropped: z.array(id),
      modelSha256: sha256,
      bytesUp: count,
      bytesDown: count,
      seconds: z.number().nonnegative(),
    })
    .strict(),
  'round.aborted': z.object({ ...roundRef, reason: z.string() }).strict(),
  'round.evaluated': z
    .object({ runId: id, modelRound: count, modelSha256: sha256, loss: z.number(), samples: count, sites: z.array(siteEvalBodySchema) })
    .strict(),
  'run.finished': z.object({ runId: id, rounds: count, modelSha256: sha256 }).strict(),
  'run.failed': z.object({ runId: id, reason: z.string() }).strict(),
  /**
   * A coordinator of a standby pair took the leadership and serves (issue 19): its term (the lease
   * revision), name and address, and the term of the leader before it (0: none). Its journal's
   * `leader` record is the audited entry; this announces it.
   */
  'leader.elected': z.object({ term: z.number().int().positive(), holder: id, address: z.string(), previousTerm: count }).strict(),
  /**
   * An aggregator shard (issue 22) changed state at the leader: `attached` (its stream is open and
   * assigned a part), `ready` or `not_ready` (its answer, with the problem), `detached` (its stream ended).
   */
  'shard.state': z.object({ shard: id, index: count, state: z.enum(['detached', 'attached', 'ready', 'not_ready']), problem: z.string() }).strict(),
} as const;

/** Every event kind with its body. */
export type EventBodies = { [K in keyof typeof eventBodySchemas]: z.infer<(typeof eventBodySchemas)[K]> };

export type EventKind = keyof EventBodies;

/** Every event kind, in the order of {@link eventBodySchemas}. */
export const EVENT_KINDS = Object.keys(eventBodySchemas) as EventKind[];

export interface BusEvent<K extends EventKind = EventKind> {
  readonly kind: K;
  readonly ts: number;
  readonly body: EventBodies[K];
}

/** The body of `e` when it is of `kind`, else undefined. */
export function eventBody<K extends EventKind>(e: BusEvent, kind: K): EventBodies[K] | undefined {
  return e.kind === kind ? (e.body as EventBodies[K]) : undefined;
}

/**
 * A gap in the NATS event feed (not a bus event): while NATS was unreachable the bounded buffer
 * overflowed and the oldest `dropped` events, emitted between `fromTs` and `toTs`, were discarded.
 * Published on `<prefix>.events.nats.gap` when publishing resumes.
 */
export const natsGapBodySchema = z.object({ dropped: z.number().int().positive(), fromTs: z.number(), toTs: z.number(), buffered: count }).strict();
export type NatsGapBody = z.infer<typeof natsGapBodySchema>;

/** Kind of the gap notice on NATS. */
export const NATS_GAP_KIND = 'nats.gap';

/** The JSON message of one event on NATS: kind, emission time, federation and the body. */
export function natsEventSchema<K extends EventKind>(kind: K) {
  return z.object({ kind: z.literal(kind), ts: z.number(), federation: z.string(), body: eventBodySchemas[kind] }).strict();
}

/** The JSON message of the gap notice on NATS. */
export const natsGapEventSchema = z.object({ kind: z.literal(NATS_GAP_KIND), ts: z.number(), federation: z.string(), body: natsGapBodySchema }).strict();

type Listener = (event: BusEvent) => void;

/** A synchronous fan-out of events to subscribers. */
export class EventBus {
  private readonly listeners = new Set<Listener>();
  private leader: BusEvent<'leader.elected'> | undefined;
  constructor(private readonly now: () => number = Date.now) {}

  emit<K extends EventKind>(kind: K, body: EventBodies[K]): void {
    const event: BusEvent<K> = { kind, ts: this.now(), body };
    if (event.kind === 'leader.elected') this.leader = event as BusEvent<'leader.elected'>;
    for (const l of this.listeners) l(event as BusEvent);
  }

  /**
   * The `leader.elected` event of this coordinator's leadership, if it leads a standby pair: who
   * leads is state, so an admin stream opened after the election (one that followed the leader
   * across a failover) gets it first.
   */
  get leadership(): BusEvent<'leader.elected'> | undefined {
    return this.leader;
  }

  /** Subscribes; returns the function that unsubscribes. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
