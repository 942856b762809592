/**
 * `SiteService`: the RPCs site agents call. Converts wire messages to domain values in one place
 * and hands them to the driver; every error leaves through `toServiceError`.
 */
import type * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import type { Logger } from '../../common/logger.js';
import { PROTOCOL_VERSION, type HeartbeatRequest__Output, type SiteServiceHandlers, type TransferProgress__Output } from '../../proto/index.js';
import type { Clock } from '../core/clock.js';
import type { SiteRoundPort, TransferLimits, UploadRoundPort } from '../shell/ports.js';
import type { SecureStageHandlers } from '../secure/messages.js';
import { CoordinatorError, toServiceError } from '../core/errors.js';
import type { EventBus } from '../observe/events.js';
import type { AuthContextLike, IdentityResolver, PeerIdentity } from '../pki/index.js';
import type { SiteRegistry } from '../sites/registry.js';
import type { Membership } from '../sites/membership.js';
import type { StateStore } from '../state/store.js';
import { ReceiptDesk } from '../audit/receipts.js';
import { authenticate } from './auth.js';
import { chargeMessage, type CallLimiter } from './limits.js';
import { requireModel, sendModelRange } from './model-download.js';
import {
  evalReportFromWire,
  failureFromWire,
  keyAdvertisementFromWire,
  labelFromWire,
  receiptFromWire,
  sharesSubmissionFromWire,
  survivorSignatureFromWire,
  taskToWire,
  unmaskResponseFromWire,
  uploadHeaderFromWire,
} from './wire.js';
import { UploadService } from '../upload/service.js';
import type { PartUploads } from '../shards/part-uploads.js';
import type { PartDownloads } from '../shards/part-downloads.js';
import type { TransferBudget } from '../upload/budget.js';

export interface SiteServiceOptions {
  readonly federation: string;
  readonly version: string;
  readonly heartbeatIntervalMs: number;
  readonly maxChunkBytes: number;
  /** The one budget of in-flight upload bytes, shared by all sites' streams. */
  readonly uploadBudget: TransferBudget;
  /** Times the upload streams' and sessions' idle timeouts. */
  readonly clock: Clock;
  /** The open round, as the site RPCs and uploads see it. */
  readonly driver: SiteRoundPort & UploadRoundPort;
  readonly registry: SiteRegistry;
  readonly store: StateStore;
  readonly bus: EventBus;
  readonly resolver: IdentityResolver;
  /** Who may take part: every site call of a site that is not a member is refused (NOT_MEMBER). */
  readonly membership: Pick<Membership, 'require'>;
  readonly logger: Logger;
  /** The secure-aggregation stage handlers for a calling site (refusing when no secure round runs). */
  readonly secure: (site: string) => SecureStageHandlers;
  /** Where an admitted upload goes: in parts to the aggregator shards, or whole here. */
  readonly partUploads: Pick<PartUploads, 'admit'>;
  /** Where a model's download comes from: in parts from the aggregator shards, or whole from here. */
  readonly partDownloads: Pick<PartDownloads, 'admit'>;
  /** The limiter every call passes (`withCallLimits`): a heartbeat on a `Heartbeats` stream is charged to it as a call is. */
  readonly limiter: CallLimiter;
}

/** Builds the handlers of `SiteService`. */
export function siteServiceHandlers(o: SiteServiceOptions): SiteServiceHandlers {
  // A member site's certificate, else refused: a non-member never joins, streams tasks or uploads.
  const member = (call: Parameters<typeof authenticate>[0]): PeerIdentity => {
    const id = authenticate(call, o.resolver, 'site');
    o.membership.require(id, call.getPeer?.() ?? 'unknown');
    return id;
  };
  const joined = (call: Parameters<typeof authenticate>[0]): PeerIdentity => {
    const id = member(call);
    if (!o.registry.get(id.id)) throw new CoordinatorError('NOT_JOINED', `site ${id.id} must call Join first`);
    return id;
  };
  const limits = (): TransferLimits => o.driver.transferLimits();
  const receipts = new ReceiptDesk({ federation: o.federation, store: o.store, logger: o.logger });
  const uploads = new UploadService({ driver: o.driver, registry: o.registry, store: o.store, logger: o.logger, limits, budget: o.uploadBudget, clock: o.clock });
  const beat = (site: string, req: HeartbeatRequest__Output): { serverTimeMs: number } => {
    const p = req.progress;
    o.registry.touch(site, labelFromWire(req.activity, 'activity'), Number.isFinite(p) ? p : -1);
    recordTransfer(o.registry, site, req.transfer);
    return { serverTimeMs: Date.now() };
  };
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
      const id = member(call);
      const req = call.request;
      if (req.protocolVersion !== PROTOCOL_VERSION) {
        throw new CoordinatorError(
          'PROTOCOL_VERSION',
          `agent speaks protocol version ${req.protocolVersion}, this coordinator speaks version ${PROTOCOL_VERSION}`,
          { agent: req.protocolVersion, coordinator: PROTOCOL_VERSION },
        );
      }
      // Stored, logged and published with every join: bounded and printable, or refused (TEXT_INVALID).
      labelFromWire(req.agentVersion, 'agent version');
      if (req.siteId !== '' && req.siteId !== id.id) {
        throw new CoordinatorError('SITE_MISMATCH', `certificate is for site ${id.id}, but the message claims ${req.siteId}`, {
          certificate: id.id,
          claimed: req.siteId,
        });
      }
      const joinedSite = o.registry.join(id.id, id.fingerprint256, req.agentVersion);
      joinedSite.certificateNotAfterMs = Date.parse(peerCertificate(call).validTo);
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

    Heartbeat: unary((call) => beat(joined(call).id, call.request)),

    // Checked when it opens, as the other streams are, and each message again as a Heartbeat call
    // is (a member, joined, not revoked); the opening call paid the first message's token and each
    // later one pays its own, so N heartbeats cost N tokens, as N calls did. The first refusal ends
    // the stream with that error.
    Heartbeats: (call) => {
      let refused = false;
      const refuse = (err: Partial<grpc.ServiceError>): void => {
        refused = true;
        call.emit('error', err);
      };
      try {
        joined(call);
      } catch (err) {
        return refuse(toServiceError(err));
      }
      let paid = true;
      call.on('data', (req: HeartbeatRequest__Output) => {
        if (refused) return;
        const over = paid ? undefined : chargeMessage(o.limiter, call, 'Heartbeats');
        paid = false;
        if (over) return refuse(over);
        try {
          // Answers are a few bytes, one per heartbeat the site's rate allows: the HTTP/2 window
          // absorbs them, so no backpressure wait (as on Tasks).
          call.write(beat(joined(call).id, req));
        } catch (err) {
          refuse(toServiceError(err));
        }
      });
      call.on('end', () => call.end());
    },

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
          await requireModel(o.store, sha256);
          await sendModelRange(call, {
            path: o.store.modelPath(sha256),
            maxChunkBytes: o.maxChunkBytes,
            idleMs: limits().idleMs,
            onBytes: (n) => {
              o.driver.countBytes('down', n);
              const rec = o.registry.get(id.id);
              if (rec) rec.bytesDown += n;
            },
          });
          call.end();
        } catch (err) {
          call.emit('error', toServiceError(err));
        }
      })();
    },

    AdmitDownload: (call, callback) => {
      void (async () => {
        try {
          const site = joined(call).id;
          callback(null, { parts: await o.partDownloads.admit(site, call.request.sha256) });
        } catch (err) {
          callback(toServiceError(err));
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

    AdmitUpload: unary((call) => {
      const site = joined(call).id;
      return { parts: o.partUploads.admit(site, uploadHeaderFromWire(call.request), call.request) };
    }),

    ReportEval: unary((call) => {
      const id = joined(call);
      o.driver.reportEval(id.id, evalReportFromWire(call.request));
      return {};
    }),

    // Secure-aggregation stages: answered by the secure round driver when the run uses it.
    AdvertiseKeys: unary((call) => o.secure(joined(call).id).advertise(keyAdvertisementFromWire(call.request))),
    SubmitShares: unary((call) => o.secure(joined(call).id).submitShares(sharesSubmissionFromWire(call.request))),
    SignSurvivors: unary((call) => o.secure(joined(call).id).signSurvivors(survivorSignatureFromWire(call.request))),
    RevealShares: unary((call) => o.secure(joined(call).id).revealShares(unmaskResponseFromWire(call.request))),
    // Audit: a participant's signed receipt of a committed round, journaled once checked.
    SubmitReceipt: (call, callback) => {
      receipts
        .enqueue(() => ({ id: joined(call), certificate: peerCertificate(call), receipt: receiptFromWire(call.request) }))
        .then(
          () => callback(null, {}),
          (err: unknown) => callback(toServiceError(err)),
        );
    },

    ReportFailure: unary((call) => {
      const id = joined(call);
      const f = failureFromWire(call.request);
      o.driver.failSite(id.id, f.round, f.attempt, `${f.code}: ${f.message}`);
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

/** The caller's certificate as the TLS layer saw it (the receipt is checked against its key). */
function peerCertificate(call: { getAuthContext(): AuthContextLike }): X509Certificate {
  const der = call.getAuthContext().sslPeerCertificate?.raw;
  if (!der) throw new CoordinatorError('UNAUTHENTICATED', 'the call has no peer certificate');
  return new X509Certificate(der);
}
