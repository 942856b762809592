/**
 * The public surface of `simulate/`: a local federation's files, `fedhpc simulate` in processes or
 * containers, and the PyTorch sites of the convergence benchmark. Others import this file only.
 */
export { DEMO_DATA, DEMO_MODEL_SEED } from './demo.js';
export { DEMO_TRAIN, writeFederationFiles, type AdminConfigFile, type CoordinatorEndpoint, type FederationFiles, type FederationFilesOptions } from './federation-files.js';
export { SIMULATE_STRATEGIES, SimulateError, bigramBaseline, simulate, type SimulateOptions, type SimulateRecord, type SimulateStrategy, type SiteEvalLine, type SiteRoundWork } from './simulate.js';
export { STANDIN_STEP_MS, STANDIN_TRAIN, simulatedTraining, standinRunner, type SimulatedTraining, type StandinSites } from './standin-sites.js';
export { containerLayout, writeContainerFederation, type ContainerLayoutOptions, type SimulateLayout } from './containers.js';
export { buildFedhpcImage, buildNatsImage, dockerUnavailable, DockerError, type BuiltImage } from './images.js';
export { TINY_CONFIG, TORCH_TRAIN, TORCH_TRAINER, dominantMix, mixedTokens, torchInitialModel, writeMixedSiteTokens, type JobRunnerKind } from './torch-sites.js';
export { accepts, natsServerBinary, startNatsCluster, waitForReplicatedStream, type NatsCluster, type NatsClusterNode } from './nats-cluster.js';
export { DEMO_LEASE, configurePair, pairEndpoints, readPairJournal, waitForLeader, type LeaderChange, type PairLease, type PairOptions, type PairSummary } from './ha-pair.js';
