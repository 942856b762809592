/**
 * `AggregatorService.Attach` at the leader (issue 22): an aggregator shard's one stream. The caller
 * must hold an `aggregator` certificate of this federation naming a shard the config lists
 * (`aggregators`; another is refused `NOT_MEMBER` and counted as `not_member`), speak this protocol
 * version, and not have followed a leadership term above this coordinator's (`NOT_LEADER`: this
 * coordinator has been superseded). The stream then carries the shard's assignments, each with the
 * leader's term, and its readiness reports (coordinator/shards/registry.ts). The coordinator's own
 * certificate attaches too, as one of the local shards it started (`localShards`), named by the hello.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/logger.js';
import { PROTOCOL_VERSION, type AggregatorServiceHandlers, type ShardInstruction, type ShardReport__Output } from '../../proto/index.js';
import { CoordinatorError, toServiceError } from '../core/errors.js';
import type { IdentityResolver, PeerIdentity } from '../pki/index.js';
import type { RefusalSink } from '../observe/refusals.js';
import type { ShardLink, ShardRegistry } from '../shards/registry.js';
import { authenticate } from './auth.js';
import { shardAggregationToWire } from './wire.js';

/** How long a shard has to send its hello after opening the stream. */
const HELLO_TIMEOUT_MS = 10_000;

export interface AggregatorServiceOptions {
  readonly resolver: IdentityResolver;
  readonly shards: ShardRegistry;
  /** This coordinator's leadership term: the lease revision of a standby pair's leader, 0 without `ha`. */
  readonly term: number;
  readonly refusals: RefusalSink;
  readonly logger: Logger;
  /**
   * Local shards (coordinator/shards/local.ts): this coordinator's own certificate (DER), which its
   * child processes present, and the shard names they may take in their hello.
   */
  readonly local?: { readonly certificate: Buffer; readonly names: ReadonlySet<string> } | undefined;
}

type AttachCall = Parameters<AggregatorServiceHandlers['Attach']>[0];

export function aggregatorServiceHandlers(o: AggregatorServiceOptions): AggregatorServiceHandlers {
  return {
    Attach: (call) => {
      let identity: PeerIdentity;
      let local = false;
      try {
        // This coordinator's own certificate is one of its local shards; the hello says which.
        local = o.local !== undefined && call.getAuthContext().sslPeerCertificate?.raw?.equals(o.local.certificate) === true;
        identity = authenticate(call, o.resolver, local ? 'coordinator' : 'aggregator');
        // With local shards, no other certificate is a shard, whatever its name (`local-1` included).
        if (!local && (o.local !== undefined || !o.shards.has(identity.id))) {
          o.refusals.refused({ reason: 'not_member', peer: call.getPeer(), cause: 'aggregator', fingerprint: identity.fingerprint256, site: identity.id });
          const why = o.local !== undefined ? 'it runs only the local shards it starts (localShards)' : "not in its config's aggregators";
          throw new CoordinatorError('NOT_MEMBER', `aggregator ${identity.id} is not one of this coordinator's shards: ${why}`, { shard: identity.id });
        }
      } catch (err) {
        call.emit('error', toServiceError(err));
        return;
      }
      serveAttach(call, local ? undefined : identity.id, o);
    },
  };
}

/** Serves one attached shard: `certified` names it by its certificate; a local shard (undefined) is named by its hello. */
function serveAttach(call: AttachCall, certified: string | undefined, o: AggregatorServiceOptions): void {
  const term = String(o.term);
  let shard = certified ?? '';
  let log = o.logger.child({ shard: certified ?? 'local' });
  let link: ShardLink | undefined;
  let ended = false;
  const end = (err?: unknown): void => {
    if (ended) return;
    ended = true;
    clearTimeout(helloTimer);
    if (link) {
      o.shards.detach(shard, link);
      log.info({ peer: call.getPeer() }, 'shard detached');
    }
    if (err === undefined) call.end();
    else call.emit('error', toServiceError(err));
  };
  const helloTimer = setTimeout(() => end(new CoordinatorError('BAD_REQUEST', `no hello within ${HELLO_TIMEOUT_MS / 1000} s`)), HELLO_TIMEOUT_MS);
  call.on('data', (report: ShardReport__Output) => {
    try {
      if (link === undefined) {
        if (certified === undefined) {
          shard = localShardName(call, report, o);
          log = o.logger.child({ shard });
        }
        link = hello(call, shard, report, o);
        clearTimeout(helloTimer);
        o.shards.attach(shard, link);
        log.info({ peer: call.getPeer(), term: o.term }, 'shard attached');
      } else if (report.kind === 'aggregated' && report.aggregated) {
        o.shards.aggregated(shard, link, report.aggregated);
      } else if (report.kind === 'received' && report.received) {
        o.shards.received(shard, link, report.received);
      } else if (report.kind === 'sent' && report.sent) {
        o.shards.sent(shard, link, report.sent);
      } else if (report.kind === 'readiness' && report.readiness) {
        o.shards.readiness(shard, link, report.readiness, term);
        const r = report.readiness;
        if (r.ready) log.info({ runId: r.runId, model: r.globalModelSha256 }, 'shard ready');
        else log.warn({ runId: r.runId, model: r.globalModelSha256, problem: r.problem }, 'shard not ready');
      } else {
        throw new CoordinatorError('BAD_REQUEST', `unexpected ${report.kind ?? 'empty'} report after the hello`);
      }
    } catch (err) {
      end(err);
    }
  });
  call.on('end', () => end());
  call.on('cancelled', () => end());
  call.on('error', () => end());
}

/**
 * The local shard a hello on this coordinator's own certificate names: `BAD_REQUEST` when the first
 * report is no hello, `NOT_MEMBER` (counted) for a name that is not one of the local shards.
 */
function localShardName(call: AttachCall, report: ShardReport__Output, o: AggregatorServiceOptions): string {
  if (report.kind !== 'hello' || !report.hello) throw new CoordinatorError('BAD_REQUEST', 'an Attach stream must start with a hello');
  const name = report.hello.shardId;
  if (!o.local?.names.has(name)) {
    o.refusals.refused({ reason: 'not_member', peer: call.getPeer(), cause: 'aggregator', site: name });
    throw new CoordinatorError('NOT_MEMBER', `this coordinator's own certificate attaches only its local shards (${[...(o.local?.names ?? [])].join(', ')}), not ${JSON.stringify(name)}`, { shard: name });
  }
  return name;
}

/** Checks the first report and makes the shard's link; throws the refusal otherwise. */
function hello(call: AttachCall, shard: string, report: ShardReport__Output, o: AggregatorServiceOptions): ShardLink {
  const h = report.kind === 'hello' ? report.hello : undefined;
  if (!h) throw new CoordinatorError('BAD_REQUEST', 'an Attach stream must start with a hello');
  if (h.protocolVersion !== PROTOCOL_VERSION) {
    throw new CoordinatorError('PROTOCOL_VERSION', `shard speaks protocol version ${h.protocolVersion}, this coordinator speaks version ${PROTOCOL_VERSION}`, {
      shard: h.protocolVersion,
      coordinator: PROTOCOL_VERSION,
    });
  }
  if (h.shardId !== '' && h.shardId !== shard) throw new CoordinatorError('SITE_MISMATCH', `the hello names shard ${JSON.stringify(h.shardId)}, the certificate ${shard}`);
  if (BigInt(h.term) > BigInt(o.term)) {
    throw new CoordinatorError('NOT_LEADER', `the shard follows leadership term ${h.term}, above this coordinator's ${o.term}: another coordinator leads`, { term: h.term });
  }
  const peer = call.getPeer();
  return {
    peer,
    servesUploads: h.servesUploads,
    send: (instruction) => {
      const term = String(o.term);
      const wire: ShardInstruction =
        'aggregate' in instruction
          ? { term, aggregate: shardAggregationToWire(instruction.aggregate) }
          : 'cancel' in instruction
            ? { term, cancel: { round: String(instruction.cancel.round), attempt: instruction.cancel.attempt } }
            : 'admit' in instruction
              ? { term, admit: instruction.admit }
              : 'admitDownload' in instruction
                ? { term, admitDownload: instruction.admitDownload }
                : 'drop' in instruction
                  ? { term, drop: instruction.drop }
                  : { term, assignment: instruction.assignment };
      call.write(wire);
    },
    close: (reason) => {
      call.emit('error', { code: grpc.status.ABORTED, details: reason, metadata: new grpc.Metadata() });
    },
  };
}
