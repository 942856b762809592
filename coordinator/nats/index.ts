/** Events and audit records on NATS (optional; see `coordinator/config.ts`'s `nats` section). */
export { NatsPublisher, type NatsPublisherOptions } from './publisher.js';
export { DEFAULT_AUDIT_STREAM, natsSchema, natsConnectOptions, resolveNatsPaths, subjectPrefix, type NatsOptions, type ResolvedNats, type NatsConnectSettings } from './options.js';
export { EventBuffer, type EventGap } from './event-buffer.js';
export { ensureAuditStream, lastAuditRecord, replayFrom, type AuditTarget } from './audit-stream.js';
