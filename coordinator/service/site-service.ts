/**
 * `SiteService`: the RPCs site agents call. Converts wire messages to domain values in one place
 * and hands them to the driver; every error leaves through `toServiceError`.
 */
import type * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { open } from 'node:fs/promises';
import type { Logger } from '../../common/logger.js';
import { isSha256 } from '../../common/files.js';
import {
  PROTOCOL_VERSION,
  type KeyAdvertisement__Output,
  type SharesSubmission__Output,
  type SurvivorSignature__Output,
  type UnmaskResponse__Output,
  type SiteServiceHandlers,
  type Task,
  type TransferProgress__Output,
} from '../../proto/index.js';
import type { Clock } from '../core/clock.js';
import type { RoundDriver } from '../shell/driver.js';
import { CoordinatorError, toServiceError } from '../core/errors.js';
import type { EventBus } from '../observe/events.js';
import type { IdentityResolver, PeerIdentity } from '../pki/index.js';
import type { SiteRegistry, SiteTask } from '../sites/registry.js';
import type { StateStore } from '../state/store.js';
import { ReceiptDesk } from '../audit/receipts.js';
import { authenticate } from './auth.js';
import { writeWithBackpressure } from './streams.js';
import { UploadService, type TransferLimits } from '../upload/service.js';
import type { TransferBudget } from '../upload/budget.js';

export interface SiteServiceOptions {
  readonly federation: string;
  readonly version: string;
  readonly heartbeatIntervalMs: number;
  readonly maxChunkBytes: number;
  /** Idle timeout of uploads when `transferLimits` is not given. */
  readonly uploadIdleMs: number;
  /** Idle timeout, stream limit and window of transfers; default from the driver's config. */
  readonly transferLimits?: () => TransferLimits;
  /** The one budget of in-flight upload bytes, shared by all sites' streams. */
  readonly uploadBudget: TransferBudget;
  /** Times the upload streams' and sessions' idle timeouts. */
  readonly clock: Clock;
  readonly driver: RoundDriver;
  readonly registry: SiteRegistry;
  readonly store: StateStore;
  readonly bus: EventBus;
  readonly resolver: IdentityResolver;
  readonly logger: Logger;
  /** The secure-aggregation stage handlers for a calling site (refusing when no secure round runs). */
  readonly secure: (site: string) => SecureStageHandlers;
}

/** Handlers of the SecAgg+ stage RPCs for one calling site; each returns the empty Ack or throws. */
export interface SecureStageHandlers {
  advertise(m: KeyAdvertisement__Output): Record<string, never>;
  submitShares(m: SharesSubmission__Output): Record<string, never>;
  signSurvivors(m: SurvivorSignature__Output): Record<string, never>;
  revealShares(m: UnmaskResponse__Output): Record<string, never>;
}

/** Stage handlers of a run without secure aggregation: every stage message is refused. */
export function refuseSecureStages(): SecureStageHandlers {
  const refuse = (): never => {
    throw new CoordinatorError('ROUND_CLOSED', 'this run does not use secure aggregation: no key, share or unmask stage is open');
  };
  return { advertise: refuse, submitShares: refuse, signSurvivors: refuse, revealShares: refuse };
}

/** Converts a domain task to its wire form. */
export function taskToWire(task: SiteTask): Task {
  switch (task.kind) {
    case 'train':
      return {
        train: {
          runId: task.runId,
          round: task.round,
          attempt: task.attempt,
          globalModel: { sha256: task.model.sha256, sizeBytes: task.model.sizeBytes },
          modelRound: task.modelRound,
          tensors: task.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
          encoding: { name: task.encoding },
          trainConfigJson: JSON.stringify(task.train),
          trainingDeadlineMs: task.trainingDeadlineMs,
          uploadDeadlineMs: task.uploadDeadlineMs,
          maxChunkBytes: task.maxChunkBytes,
          maxStreams: task.maxStreams ?? 1,
          evaluate: task.evaluate,
          shares: task.shares.map((x) => ({ fromSite: x.from, toSite: x.to, nonce: x.nonce, ciphertext: x.ciphertext })),
          shareHolders: [...task.shareHolders],
        },
      };
    case 'eval':
      return {
        eval: {
          runId: task.runId,
          model: { sha256: task.model.sha256, sizeBytes: task.model.sizeBytes },
          modelRound: task.modelRound,
          deadlineMs: task.deadlineMs,
        },
      };
    case 'cancel':
      return { cancel: { runId: task.runId, round: task.round, attempt: task.attempt, reason: task.reason } };
    case 'keys': {
      const p = task.params;
      return {
        keys: {
          runId: task.runId,
          round: task.round,
          attempt: task.attempt,
          params: {
            threshold: p.threshold,
            quantBits: p.quantBits,
            modulusBits: p.modulusBits,
            clip: p.clip,
            maxWeight: p.maxWeight,
            graphSeed: p.graphSeed,
            degree: p.degree,
            roster: [...p.roster],
          },
        },
      };
    }
    case 'shares':
      return {
        shares: {
          runId: task.runId,
          round: task.round,
          attempt: task.attempt,
          advertisements: task.adverts.map((a) => ({
            runId: task.runId,
            round: task.round,
            attempt: task.attempt,
            siteId: a.site,
            cPublicKey: a.cPk,
            sPublicKey: a.sPk,
            signature: a.signature,
            certificatePem: a.certificatePem,
          })),
        },
      };
    case 'consistency':
      return { consistency: { runId: task.runId, round: task.round, attempt: task.attempt, survivors: [...task.survivors], dropped: [...task.dropped] } };
    case 'unmask':
      return {
        unmask: {
          runId: task.runId,
          round: task.round,
          attempt: task.attempt,
          survivors: [...task.survivors],
          dropped: [...task.dropped],
          signatures: task.signatures.map((x) => ({ runId: task.runId, round: task.round, attempt: task.attempt, siteId: x.site, signature: x.signature })),
        },
      };
  }
}

/** Builds the handlers of `SiteService`. */
export function siteServiceHandlers(o: SiteServiceOptions): SiteServiceHandlers {
  const joined = (call: Parameters<typeof authenticate>[0]): PeerIdentity => {
    const id = authenticate(call, o.resolver, 'site');
    if (!o.registry.get(id.id)) throw new CoordinatorError('NOT_JOINED', `site ${id.id} must call Join first`);
    return id;
  };
  const limits = o.transferLimits ?? (() => o.driver.transferLimits(o.uploadIdleMs));
  const receipts = new ReceiptDesk({ federation: o.federation, store: o.store, logger: o.logger });
  const uploads = new UploadService({ driver: o.driver, registry: o.registry, store: o.store, logger: o.logger, limits, budget: o.uploadBudget, clock: o.clock });
  const unary =
    <Req, Res>(fn: (call: grpc.ServerUnaryCall<Req, Res>) => Res) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      try {
        callback(null, fn(call));
      } catch (err) {
        callback(toServiceError(err));
      }
    };

  return {
    Join: unary((call) => {
      const id = authenticate(call, o.resolver, 'site');
      const req = call.request;
      if (req.protocolVersion !== PROTOCOL_VERSION) {
        throw new CoordinatorError(
          'PROTOCOL_VERSION',
          `agent speaks protocol version ${req.protocolVersion}, this coordinator speaks version ${PROTOCOL_VERSION}`,
          { agent: req.protocolVersion, coordinator: PROTOCOL_VERSION },
        );
      }
      // Stored, logged and published with every join: bounded and printable, or refused.
      if (!/^[\x20-\x7e]{0,64}$/.test(req.agentVersion)) {
        throw new CoordinatorError('BAD_REQUEST', `agent version must be at most 64 printable ASCII characters (got ${req.agentVersion.length} characters)`);
      }
      if (req.siteId !== '' && req.siteId !== id.id) {
        throw new CoordinatorError('SITE_MISMATCH', `certificate is for site ${id.id}, but the message claims ${req.siteId}`, {
          certificate: id.id,
          claimed: req.siteId,
        });
      }
      o.registry.join(id.id, id.fingerprint256, req.agentVersion);
      o.logger.info({ site: id.id, agentVersion: req.agentVersion }, 'site joined');
      o.bus.emit('site.joined', { site: id.id, agentVersion: req.agentVersion, fingerprint: id.fingerprint256 });
      return {
        federation: o.federation,
        siteId: id.id,
        protocolVersion: PROTOCOL_VERSION,
        heartbeatIntervalMs: o.heartbeatIntervalMs,
        coordinatorVersion: o.version,
      };
    }),

    Heartbeat: unary((call) => {
      const id = joined(call);
      const p = call.request.progress;
      o.registry.touch(id.id, call.request.activity.slice(0, 64), Number.isFinite(p) ? p : -1);
      recordTransfer(o.registry, id.id, call.request.transfer);
      return { serverTimeMs: Date.now() };
    }),

    Tasks: (call) => {
      let id: PeerIdentity;
      try {
        id = joined(call);
      } catch (err) {
        call.emit('error', toServiceError(err));
        return;
      }
      const site = id.id;
      const detach = o.registry.attach(
        site,
        (task) => {
          // Tasks are few and small; the HTTP/2 window absorbs them, so no backpressure wait here.
          call.write(taskToWire(task));
        },
        () => call.end(),
      );
      const onGone = (): void => {
        if (detach()) {
          o.logger.info({ site }, 'site task stream closed');
          o.bus.emit('site.left', { site });
          o.driver.siteDisconnected(site);
        }
      };
      call.on('cancelled', onGone);
      call.on('close', onGone);
      call.on('error', onGone);
      o.logger.info({ site }, 'site task stream open');
      o.driver.siteConnected(site);
    },

    Download: (call) => {
      void (async () => {
        try {
          const id = joined(call);
          const { sha256 } = call.request;
          if (!isSha256(sha256)) throw new CoordinatorError('BAD_REQUEST', `not a SHA-256: ${JSON.stringify(sha256)}`);
          if (!(await o.store.hasModel(sha256))) throw new CoordinatorError('MODEL_NOT_FOUND', `no model ${sha256}`);
          const file = await open(o.store.modelPath(sha256), 'r');
          try {
            const { size } = await file.stat();
            let offset = Number(call.request.offset);
            if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) {
              throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `offset ${call.request.offset} outside model of ${size} bytes`);
            }
            // A reader that takes nothing for the idle timeout is stalled: the download ends.
            const idleMs = limits().idleMs;
            while (offset < size && !call.cancelled) {
              const n = Math.min(o.maxChunkBytes, size - offset);
              const buf = Buffer.allocUnsafe(n);
              const { bytesRead } = await file.read(buf, 0, n, offset);
              const data = buf.subarray(0, bytesRead);
              await writeWithBackpressure(call, { offset, data, totalBytes: size, crc32c: crc32c(data) }, AbortSignal.timeout(idleMs));
              offset += bytesRead;
              o.driver.countBytes('down', bytesRead);
              const rec = o.registry.get(id.id);
              if (rec) rec.bytesDown += bytesRead;
            }
            call.end();
          } finally {
            await file.close();
          }
        } catch (err) {
          call.emit('error', toServiceError(err));
        }
      })();
    },

    Upload: (call) => {
      let site: string;
      try {
        site = joined(call).id;
      } catch (err) {
        call.emit('error', toServiceError(err));
        return;
      }
      void uploads.serve(call, site);
    },

    ReportEval: unary((call) => {
      const id = joined(call);
      const r = call.request;
      const loss = r.loss;
      const samples = Number(r.samples);
      if (!Number.isFinite(loss) || !Number.isSafeInteger(samples) || samples <= 0) {
        throw new CoordinatorError('BAD_REQUEST', `evaluation needs a finite loss and positive samples (got ${loss}, ${r.samples})`);
      }
      o.driver.evals.report(id.id, Number(r.modelRound), r.modelSha256, loss, samples);
      return {};
    }),

    // Secure-aggregation stages: answered by the secure round driver when the run uses it.
    AdvertiseKeys: unary((call) => o.secure(joined(call).id).advertise(call.request)),
    SubmitShares: unary((call) => o.secure(joined(call).id).submitShares(call.request)),
    SignSurvivors: unary((call) => o.secure(joined(call).id).signSurvivors(call.request)),
    RevealShares: unary((call) => o.secure(joined(call).id).revealShares(call.request)),
    // Audit: a participant's signed receipt of a committed round, journaled once checked.
    SubmitReceipt: (call, callback) => receipts.handle(call, callback, () => joined(call)),

    ReportFailure: unary((call) => {
      const id = joined(call);
      const r = call.request;
      o.driver.failSite(id.id, Number(r.round), r.attempt, `${r.code.slice(0, 64)}: ${r.message.slice(0, 512)}`);
      return {};
    }),
  };
}

/** Keeps the transfer a heartbeat reports on the site's record (cleared when none runs). */
function recordTransfer(registry: SiteRegistry, site: string, t: TransferProgress__Output | null | undefined): void {
  const rec = registry.get(site);
  if (!rec) return;
  if (!t || (t.direction !== 'upload' && t.direction !== 'download')) {
    delete rec.transfer;
    return;
  }
  const bytes = Number(t.bytes);
  const total = Number(t.totalBytes);
  const rate = Number.isFinite(t.rateBytesPerS) && t.rateBytesPerS > 0 ? t.rateBytesPerS : 0;
  rec.transfer = {
    direction: t.direction,
    bytes,
    total,
    rateBytesPerS: rate,
    etaS: rate > 0 ? Math.max(0, total - bytes) / rate : -1,
    updatedAt: Date.now(),
  };
}
