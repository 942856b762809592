/** The benchmarks `bench/main.ts` knows, by name. */
import { convergence } from './convergence.js';
import { convergenceTorch } from './convergence-torch.js';
import { secagg } from './secagg.js';

export interface Benchmark {
  /** Runs the benchmark, logging human-readable lines; returns its figures. */
  run(args: string[], log: (line: string) => void): Promise<Record<string, number | string | boolean>>;
}

export const BENCHMARKS: Record<string, Benchmark> = {
  convergence,
  'convergence-torch': convergenceTorch,
  secagg,
};
