/** Public surface of the coordinator part. */
export { AdminClient, type AdminClientOptions, type AdminEvent } from './admin-client.js';
export { coordinatorConfigSchema, loadCoordinatorConfig, type CoordinatorOptions, type ResolvedCoordinatorConfig } from './config.js';
export { COORDINATOR_VERSION, SERVER_CHANNEL_OPTIONS, startCoordinator, type CoordinatorHandle, type StartCoordinatorOptions } from './coordinator.js';
export { systemClock, type Clock } from './shell/driver.js';
export { CoordinatorError, type CoordinatorErrorCode } from './core/errors.js';
export type { BusEvent, EventBodies, EventKind } from './observe/events.js';
export { EVENT_KINDS, NATS_GAP_KIND, eventBodySchemas, natsEventSchema, natsGapEventSchema, type NatsGapBody } from './observe/events.js';
export { GENESIS_HASH, Journal, readJournal, recordHash, verifyChain, type JournalBody, type JournalRecord } from './state/journal.js';
export { JetStreamJournal, type JetStreamJournalOptions } from './state/jetstream-journal.js';
export { LEASE_DEFAULTS, LeaderLease, type LeaseOptions } from './ha/lease.js';
export { exportLines, readStateDirTrail, readStreamTrail, verifyAudit, type AuditLine, type AuditReport } from './audit/index.js';
export { DEFAULT_VALIDITY_DAYS, PkiError, createCa, enrolSite, issueCertificate, loadCaFiles, provisionFederation, renewalCsr, signSiteCsr, writeAtomic, type ProvisionManifest } from './pki/index.js';
export { runSchema, type ResolvedRun } from './config.js';
export { KernelPool, type PoolEncoding, type PoolRegion } from './aggregate/kernel-pool.js';
export { DEFAULT_AUDIT_STREAM } from './nats/index.js';
export { createDashboardToken } from './dashboard/token.js';
export type { DashboardEndpoint } from './dashboard/server.js';
export { EXPORT_ERROR_CODES, ExportError, HF_SHARD_LIMIT_BYTES, exportHf, verifyHfExport, type ExportErrorCode, type ExportHfOptions, type ExportHfResult, type ExportVerifyReport } from './export/index.js';
