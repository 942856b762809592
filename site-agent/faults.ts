/**
 * Fault injection for simulations (`fedhpc simulate --drop SITE@PHASE`): the agent kills its own
 * process with SIGKILL at a chosen phase, as a crashed node would, so dropout handling is tested
 * against a real death, not a polite disconnect.
 */
import type { Logger } from '../common/logger.js';

/** Phases at which `dieAt` can kill the agent. */
export const DROP_PHASES = ['keys', 'shares', 'upload', 'unmask'] as const;
/** One of {@link DROP_PHASES}. */
export type DropPhase = (typeof DROP_PHASES)[number];

/** Called as the agent reaches a phase: kills the process when it is `dieAt`. */
export type FaultPoint = (phase: DropPhase) => void;

/** The fault point of an agent told to die at `dieAt` (none: a fault point that does nothing). */
export function faultPoint(dieAt: DropPhase | undefined, log: Logger): FaultPoint {
  return (phase) => {
    if (dieAt !== phase) return;
    log.warn({ phase }, 'fault injection: killing this agent');
    process.kill(process.pid, 'SIGKILL');
  };
}
