/**
 * `SiteService`: the RPCs site agents call. Converts wire messages to domain values in one place
 * and hands them to the driver; every error leaves through `toServiceError`.
 */
import type * as grpc from '@grpc/grpc-js';
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
  type UploadMessage__Output,
} from '../../proto/index.js';
import type { RoundDriver } from '../driver.js';
import { CoordinatorError, toServiceError } from '../errors.js';
import type { EventBus } from '../events.js';
import type { IdentityResolver, PeerIdentity } from '../pki/index.js';
import type { SiteRegistry, SiteTask } from '../registry.js';
import type { StateStore } from '../state/store.js';
import { authenticate } from './auth.js';
import { readMessages, writeWithBackpressure } from './streams.js';
import { spoolChunks, validateHeader } from './upload.js';

export interface SiteServiceOptions {
  readonly federation: string;
  readonly version: string;
  readonly heartbeatIntervalMs: number;
  readonly maxChunkBytes: number;
  readonly uploadIdleMs: number;
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
            while (offset < size && !call.cancelled) {
              const n = Math.min(o.maxChunkBytes, size - offset);
              const buf = Buffer.allocUnsafe(n);
              const { bytesRead } = await file.read(buf, 0, n, offset);
              await writeWithBackpressure(call, { offset, data: buf.subarray(0, bytesRead), totalBytes: size });
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

    Upload: (call, callback) => {
      void (async () => {
        const abort = new AbortController();
        const messages = readMessages<UploadMessage__Output>(call, abort.signal, o.uploadIdleMs);
        let began: { site: string; round: number; attempt: number } | undefined;
        let site: string | undefined;
        try {
          const id = joined(call);
          site = id.id;
          o.registry.get(site)?.uploads.add(abort);
          const first = await messages.next();
          if (first.done || first.value.kind !== 'header' || !first.value.header) {
            throw new CoordinatorError('UPLOAD_INVALID', 'an upload must start with a header');
          }
          const exp = o.driver.uploadExpectation();
          const intent = validateHeader(first.value.header, exp);
          o.driver.beginUpload(site, intent);
          began = { site, round: intent.round, attempt: intent.attempt };
          o.registry.touch(site, 'upload', 0);
          const dir = await o.store.spoolDir(intent.round, intent.attempt);
          const rec = o.registry.get(site);
          const spool = await spoolChunks(messages, site, dir, intent, exp, (n) => {
            o.driver.countBytes('up', n);
            if (rec) rec.bytesUp += n;
          });
          const accepted = o.driver.completeUpload(site, intent, spool);
          if (!accepted) throw new CoordinatorError('ROUND_CLOSED', `round ${intent.round}.${intent.attempt} no longer takes this upload`);
          o.logger.info({ site, round: intent.round, phase: 'upload', bytes: spool.bytes }, 'upload verified');
          callback(null, { accepted: true, receivedBytes: spool.bytes, message: 'verified' });
        } catch (err) {
          const e = err instanceof CoordinatorError ? err : new CoordinatorError('UPLOAD_INTERRUPTED', (err as Error).message, {}, { cause: err });
          if (began) o.driver.failSite(began.site, began.round, began.attempt, `${e.code}: ${e.message}`);
          else if (site && e.code !== 'ROUND_CLOSED' && e.code !== 'NOT_INVITED' && e.code !== 'NOT_JOINED') {
            // A header that fails validation is still a broken contribution to the open round.
            const s = o.driver.scheduler.run;
            if (s.phase === 'training' || s.phase === 'upload') o.driver.failSite(site, s.round, s.attempt, `${e.code}: ${e.message}`);
          }
          o.logger.warn({ site, err: { code: e.code, message: e.message } }, 'upload refused');
          callback(toServiceError(e));
        } finally {
          messages.dispose();
          if (site) o.registry.get(site)?.uploads.delete(abort);
        }
      })();
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

    ReportFailure: unary((call) => {
      const id = joined(call);
      const r = call.request;
      o.driver.failSite(id.id, Number(r.round), r.attempt, `${r.code.slice(0, 64)}: ${r.message.slice(0, 512)}`);
      return {};
    }),
  };
}
