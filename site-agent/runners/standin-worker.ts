/**
 * The stand-in's persistent trainer in a worker thread of its own (standin-persistent.ts): runs the
 * loop on the session directory it is given until `STOP`, exits 0; a failure exits 65 (a global it
 * refused) or 1, its message posted first for the agent's log.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loopExitCode, runStandinLoop, type StandinPace } from './standin-persistent.js';

const { dir, pace } = workerData as { dir: string; pace: StandinPace };
runStandinLoop(dir, pace, new AbortController().signal).then(
  () => process.exit(0),
  (err: unknown) => {
    parentPort?.postMessage({ error: (err as Error).message });
    process.exit(loopExitCode(err));
  },
);
