/**
 * Test-only kill points: with `FEDHPC_CRASH_AT=<point>` in the coordinator's environment, the
 * process SIGKILLs itself the first time it reaches that point, so crash-safety tests can stop it
 * at an exact place (a phase, or inside `commit`) instead of racing a timer. `<point>@<round>`
 * arms it for one round only: the process dies on reaching the point while round `<round>` is open
 * and passes it in every other round, so a test can restart a killed coordinator armed for a later
 * round and kill each leader of one run in turn. Without the variable every call is a no-op; a
 * value that names no point (or no round) makes the coordinator throw when its modules load.
 */

/** The kill points: `phase.<name>` on entering a phase, one mid-upload, and two inside `commit`. */
export const CRASH_POINTS = [
  'phase.training',
  'phase.upload',
  'phase.aggregate',
  'phase.commit',
  'phase.keys',
  'phase.shares',
  'phase.unmask',
  /** The attempt has received half the bytes its invited sites' deltas hold (uploads cut mid-way). */
  'upload.half',
  /** The new checkpoint is on disk, the journal does not name it yet. */
  'commit.before-journal',
  /** The journal names the new checkpoint, nobody has been told. */
  'commit.after-journal',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

/** An armed kill point, and the one round it is armed for (every round when undefined). */
interface Armed {
  readonly point: CrashPoint;
  readonly round: number | undefined;
}

function parseArmed(value: string | undefined): Armed | undefined {
  if (value === undefined || value === '') return undefined;
  const groups = /^(?<point>[a-z.-]+)(?:@(?<round>[1-9][0-9]*))?$/.exec(value)?.groups;
  const point = CRASH_POINTS.find((p) => p === groups?.['point']);
  // A typo would leave the process alive and the test waiting for a kill that never comes.
  if (point === undefined) throw new Error(`FEDHPC_CRASH_AT must be <point> or <point>@<round>, <point> one of ${CRASH_POINTS.join(', ')}; got ${JSON.stringify(value)}`);
  const round = groups?.['round'];
  return { point, round: round === undefined ? undefined : Number(round) };
}

// Read once, when the coordinator's modules load at start-up.
const armed = parseArmed(process.env['FEDHPC_CRASH_AT']);

function reached(point: string, round: number): void {
  if (armed !== undefined && armed.point === point && (armed.round === undefined || armed.round === round)) process.kill(process.pid, 'SIGKILL');
}

/** Whether `point` is the armed kill point: a check that costs something runs only then. */
export function crashPointArmed(point: CrashPoint): boolean {
  return armed?.point === point;
}

/** Kills the process with SIGKILL when `point` is the armed kill point (and `round` its round, if it has one). */
export function crashPoint(point: CrashPoint, round: number): void {
  reached(point, round);
}

/** `phase.<phase>` as a kill point, when the phase has one; `round` is the round entering it. */
export function phaseCrashPoint(phase: string, round: number): void {
  reached(`phase.${phase}`, round);
}
