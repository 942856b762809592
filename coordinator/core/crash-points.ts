/**
 * Test-only kill points: with `FEDHPC_CRASH_AT=<point>` in the coordinator's environment, the
 * process SIGKILLs itself the first time it reaches that point, so crash-safety tests can stop it
 * at an exact place (a phase, or inside `commit`) instead of racing a timer. Without the variable
 * every call is a no-op.
 */

/** The kill points: `phase.<name>` on entering a phase, and two inside `commit`. */
export const CRASH_POINTS = [
  'phase.training',
  'phase.upload',
  'phase.aggregate',
  'phase.commit',
  'phase.keys',
  'phase.shares',
  'phase.unmask',
  /** The new checkpoint is on disk, the journal does not name it yet. */
  'commit.before-journal',
  /** The journal names the new checkpoint, nobody has been told. */
  'commit.after-journal',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

// Read once, when the coordinator's modules load at start-up.
const armed = process.env['FEDHPC_CRASH_AT'];

/** Kills the process with SIGKILL when `point` is the armed kill point. */
export function crashPoint(point: CrashPoint): void {
  if (armed === point) process.kill(process.pid, 'SIGKILL');
}

/** `phase.<phase>` as a kill point, when the phase has one. */
export function phaseCrashPoint(phase: string): void {
  if (armed === `phase.${phase}`) process.kill(process.pid, 'SIGKILL');
}
