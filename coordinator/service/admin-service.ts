/**
 * `AdminService`: status, sites, rounds and the live event stream, for the `fedhpc admin` CLI.
 * Needs an admin certificate; rounds are read from the journal, the source of truth.
 */
import type * as grpc from '@grpc/grpc-js';
import type { AdminServiceHandlers, RoundInfo, SiteEval } from '../../proto/index.js';
import type { RoundDriver } from '../driver.js';
import { toServiceError } from '../errors.js';
import type { EventBus } from '../events.js';
import type { IdentityResolver } from '../pki/index.js';
import type { SiteRegistry } from '../registry.js';
import { recordsOf } from '../state/records.js';
import type { StateStore } from '../state/store.js';
import { authenticate } from './auth.js';

export interface AdminServiceOptions {
  readonly federation: string;
  readonly version: string;
  readonly runId: string;
  readonly driver: RoundDriver;
  readonly registry: SiteRegistry;
  readonly store: StateStore;
  readonly bus: EventBus;
  readonly resolver: IdentityResolver;
  /** Most events buffered for a slow `Events` reader before its stream is ended. */
  readonly maxBufferedEvents: number;
}

const RUN_STATE: Record<string, string> = { idle: 'idle', finished: 'finished', failed: 'failed' };

/** Builds the handlers of `AdminService`. */
export function adminServiceHandlers(o: AdminServiceOptions): AdminServiceHandlers {
  const unary =
    <Req, Res>(fn: () => Res) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      try {
        authenticate(call, o.resolver, 'admin');
        callback(null, fn());
      } catch (err) {
        callback(toServiceError(err));
      }
    };

  return {
    Status: unary(() => {
      const s = o.driver.scheduler.run;
      const run = o.driver.runContext;
      const committed = recordsOf(o.store.records().map((r) => r.body), o.runId, 'round-committed');
      const inRound = 'round' in s ? s : undefined;
      return {
        federation: o.federation,
        coordinatorVersion: o.version,
        runId: o.runId,
        runState: RUN_STATE[s.phase] ?? 'running',
        round: inRound?.round ?? 0,
        attempt: inRound?.attempt ?? 0,
        phase: inRound ? s.phase : '',
        roundsCommitted: committed.length,
        roundsTotal: run?.plan.rounds ?? 0,
        globalModelSha256: run?.globalSha256 ?? '',
        sitesConnected: o.registry.connected().length,
        sitesKnown: o.registry.list().length,
        phaseDeadlineMs: inRound?.deadline ?? 0,
        uptimeMs: o.driver.uptimeMs,
      };
    }),

    Sites: unary(() => ({
      sites: o.registry.list().map((s) => ({
        siteId: s.id,
        connected: s.deliver !== undefined,
        lastSeenMs: s.lastSeenMs,
        activity: s.activity,
        progress: s.progress,
        agentVersion: s.agentVersion,
        bytesUp: s.bytesUp,
        bytesDown: s.bytesDown,
        roundsContributed: s.roundsContributed,
        certificateFingerprint: s.fingerprint,
      })),
    })),

    Rounds: unary(() => {
      const records = o.store.records();
      const evalOf = (modelRound: number): { evals: SiteEval[]; evalLoss: number; hasEval: boolean } => {
        const e = o.driver.evals.result(modelRound);
        return e
          ? { evals: e.sites.map((x) => ({ siteId: x.site, loss: x.loss, samples: x.samples })), evalLoss: e.loss, hasEval: true }
          : { evals: [], evalLoss: 0, hasEval: false };
      };
      const rounds: RoundInfo[] = [];
      for (const r of records) {
        const b = r.body;
        if (b['runId'] !== o.runId) continue;
        if (b.type === 'round-committed') {
          const c = recordsOf([b], o.runId, 'round-committed')[0]!;
          rounds.push({
            round: c.round,
            attempt: c.attempt,
            outcome: 'committed',
            participants: c.participants.map((p) => p.site),
            dropped: [...c.dropped],
            modelSha256: c.modelSha256,
            parentSha256: c.parentSha256,
            bytesUp: c.bytesUp,
            bytesDown: c.bytesDown,
            startedMs: c.startedMs,
            finishedMs: r.ts,
            strategy: c.strategy.name,
            ...evalOf(c.round),
          });
        } else if (b.type === 'round-aborted') {
          const a = recordsOf([b], o.runId, 'round-aborted')[0]!;
          rounds.push({ round: a.round, attempt: a.attempt, outcome: 'aborted', reason: a.reason, finishedMs: r.ts });
        }
      }
      const initial = evalOf(0);
      return { rounds, initialEvals: initial.evals, initialEvalLoss: initial.evalLoss, hasInitialEval: initial.hasEval };
    }),

    Events: (call) => {
      try {
        authenticate(call, o.resolver, 'admin');
      } catch (err) {
        call.emit('error', toServiceError(err));
        return;
      }
      const unsubscribe = o.bus.subscribe((event) => {
        if (call.writableLength > o.maxBufferedEvents) {
          unsubscribe();
          call.emit('error', { code: 8, details: 'RESOURCE_EXHAUSTED: event reader too slow; reconnect and re-read state' });
          return;
        }
        call.write({ kind: event.kind, tsMs: event.ts, json: JSON.stringify(event.body) });
      });
      const stop = (): void => {
        unsubscribe();
      };
      call.on('cancelled', stop);
      call.on('close', stop);
      call.on('error', stop);
    },
  };
}
