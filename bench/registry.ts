/** The benchmarks `bench/main.ts` knows, by name. */
import { aggregate } from './aggregate.js';
import { audit } from './audit.js';
import { convergence } from './convergence.js';
import { convergenceTorch } from './convergence-torch.js';
import { failover } from './failover.js';
import { heterogeneity } from './heterogeneity.js';
import { ingestBench } from './ingest.js';
import { journal } from './journal.js';
import { load } from './load.js';
import { memory } from './memory.js';
import { salamandra2b } from './salamandra.js';
import { secagg } from './secagg.js';
import { shardAggregate } from './shard-aggregate.js';
import { transport } from './transport.js';
import { wan } from './wan.js';

export interface Benchmark {
  /** Runs the benchmark, logging human-readable lines; returns its figures. */
  run(args: string[], log: (line: string) => void): Promise<Record<string, number | string | boolean>>;
}

export const BENCHMARKS: Record<string, Benchmark> = {
  aggregate,
  audit,
  convergence,
  'convergence-torch': convergenceTorch,
  failover,
  heterogeneity,
  ingest: ingestBench,
  journal,
  load,
  memory,
  'salamandra-2b': salamandra2b,
  secagg,
  'shard-aggregate': shardAggregate,
  transport,
  wan,
};
