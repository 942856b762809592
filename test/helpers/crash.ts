/**
 * A coordinator process armed with a kill point (`FEDHPC_CRASH_AT`, coordinator/core/crash-points.ts):
 * the built CLI started with that variable in its environment.
 */
import { startCli, type Proc, type TestFederation } from './federation.js';

/** Starts `fed`'s coordinator as a process that SIGKILLs itself on reaching `point`. */
export function startArmedCoordinator(fed: TestFederation, point: string, name = 'coordinator-armed'): Promise<Proc> {
  return startCli(name, ['coordinator', '--config', fed.files.coordinatorConfig], fed.dir, { ...process.env, FEDHPC_CRASH_AT: point });
}
