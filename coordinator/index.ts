/** Public surface of the coordinator part. */
export { AdminClient, type AdminClientOptions, type AdminEvent } from './admin-client.js';
export { coordinatorConfigSchema, loadCoordinatorConfig, type CoordinatorOptions, type ResolvedCoordinatorConfig } from './config.js';
export { COORDINATOR_VERSION, startCoordinator, type CoordinatorHandle, type StartCoordinatorOptions } from './coordinator.js';
export { systemClock, type Clock } from './driver.js';
export { CoordinatorError, type CoordinatorErrorCode } from './errors.js';
export type { BusEvent, EventBodies, EventKind } from './events.js';
export { readJournal, verifyChain } from './state/journal.js';
export { provisionFederation, type ProvisionManifest } from './pki/index.js';
