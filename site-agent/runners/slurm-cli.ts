/**
 * Thin wrappers over Slurm's commands (sbatch, squeue, scontrol, sacct, scancel) with parsing. Each
 * call has a deadline and an AbortSignal. Slurm forgets a finished job after MinJobAge and `sacct`
 * needs the accounting daemon, so {@link SlurmCli.jobInfo} asks squeue, then scontrol, then sacct,
 * and says `UNKNOWN` when none of them knows the job any more.
 */
import { execFile } from 'node:child_process';
import { findExecutable } from './round-dir.js';

/** Job states a runner meets (REFERENCE.md, "Slurm job states"), plus `UNKNOWN`: forgotten. */
export const SLURM_STATES = [
  'PENDING',
  'CONFIGURING',
  'RUNNING',
  'SUSPENDED',
  'STOPPED',
  'SIGNALING',
  'RESIZING',
  'STAGE_OUT',
  'COMPLETING',
  'COMPLETED',
  'FAILED',
  'TIMEOUT',
  'CANCELLED',
  'PREEMPTED',
  'NODE_FAIL',
  'OUT_OF_MEMORY',
  'BOOT_FAIL',
  'DEADLINE',
  'REQUEUED',
  'REQUEUE_HOLD',
  'REQUEUE_FED',
  'SPECIAL_EXIT',
  'REVOKED',
  'UNKNOWN',
] as const;
export type SlurmState = (typeof SLURM_STATES)[number];

/** States after which the job will not run again unless requeued. */
export const TERMINAL_STATES: ReadonlySet<SlurmState> = new Set([
  'COMPLETED',
  'FAILED',
  'TIMEOUT',
  'CANCELLED',
  'PREEMPTED',
  'NODE_FAIL',
  'OUT_OF_MEMORY',
  'BOOT_FAIL',
  'DEADLINE',
  'SPECIAL_EXIT',
  'REVOKED',
]);

/** What Slurm (or the job's own output, once Slurm forgot it) says about a job. */
export interface JobInfo {
  readonly state: SlurmState;
  /** Exit code of the batch script, once the job ended. */
  readonly exitCode?: number;
  /** Why a job is pending (`Priority`, `Resources`, `BeginTime`, …). */
  readonly reason?: string;
  /** How many times Slurm requeued the job. */
  readonly restarts?: number;
  readonly source: 'squeue' | 'scontrol' | 'sacct' | 'none';
}

/** The commands the runner cannot work without; `sacct` is optional. */
export const REQUIRED_SLURM_COMMANDS = ['sbatch', 'squeue', 'scontrol', 'scancel'] as const;

/** A Slurm command failed, timed out or is missing. */
export class SlurmCommandError extends Error {
  readonly code = 'SLURM_COMMAND_FAILED';
  constructor(
    readonly command: string,
    message: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SlurmCommandError';
  }
}

export interface SlurmCliOptions {
  /** Environment of the commands (its PATH finds them). */
  readonly env: NodeJS.ProcessEnv;
  /** Deadline of each command. */
  readonly timeoutMs: number;
}

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const parseState = (s: string | undefined): SlurmState | undefined => {
  const word = (s ?? '').trim().split(/\s+/)[0]?.replace(/\+$/, '') ?? '';
  return (SLURM_STATES as readonly string[]).includes(word) ? (word as SlurmState) : undefined;
};

/** Parses `scontrol show job -o` output (one line of `Key=Value` fields). */
export function parseScontrolJob(line: string): JobInfo | undefined {
  const field = (key: string): string | undefined => new RegExp(`(?:^|\\s)${key}=(\\S*)`).exec(line)?.[1];
  const state = parseState(field('JobState'));
  if (state === undefined) return undefined;
  const exit = field('ExitCode')?.split(':');
  const restarts = field('Restarts');
  return {
    state,
    source: 'scontrol',
    ...(exit?.[0] !== undefined && /^\d+$/.test(exit[0]) ? { exitCode: Number(exit[0]) } : {}),
    ...(field('Reason') !== undefined ? { reason: field('Reason') } : {}),
    ...(restarts !== undefined && /^\d+$/.test(restarts) ? { restarts: Number(restarts) } : {}),
  };
}

const TIME = /^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$/;

/** Seconds in a Slurm time limit ("M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S"). */
export function parseTimeLimit(s: string): number | undefined {
  const m = TIME.exec(s);
  if (!m) return undefined;
  const n = (i: number): number => Number(m[i] ?? 0);
  if (m[1] !== undefined) return n(1) * 86_400 + n(2) * 3600 + n(3) * 60 + n(4);
  if (m[7] !== undefined) return n(5) * 3600 + n(6) * 60 + n(7);
  return n(5) * 60 + n(6);
}

/** A Slurm time limit of `seconds`, as "D-HH:MM:SS" (the inverse of {@link parseTimeLimit}). */
export function formatTimeLimit(seconds: number): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 86_400)}-${pad(Math.floor((s % 86_400) / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

/**
 * What the `slurm` runner asks of Slurm. {@link SlurmCli} is the real one; a test may stand in a
 * scripted controller for sequences a one-node cluster cannot produce on demand (a job preempted
 * twice), so the runner depends on this shape, not on the class.
 */
/** The Slurm commands the runner uses (accounting optional: a scripted Slurm in tests has none). */
export type SlurmCommands = Pick<SlurmCli, 'missing' | 'sbatch' | 'jobInfo' | 'jobsNamed' | 'scancel'> & Partial<Pick<SlurmCli, 'accounting'>>;

/** Runs Slurm's commands. */
export class SlurmCli {
  private sacctAvailable: boolean;

  constructor(private readonly o: SlurmCliOptions) {
    this.sacctAvailable = this.missing(['sacct']).length === 0;
  }

  /** The commands of `names` that are not on PATH. */
  missing(names: readonly string[]): string[] {
    return names.filter((n) => findExecutable(n, this.o.env['PATH'], process.cwd()) === undefined);
  }

  /** Runs `command args`; a non-zero exit is returned, not thrown (callers parse it). */
  private run(command: string, args: readonly string[], signal: AbortSignal, env: NodeJS.ProcessEnv = this.o.env): Promise<Run> {
    return new Promise((resolve, reject) => {
      execFile(command, args, { env, timeout: this.o.timeoutMs, killSignal: 'SIGKILL', signal, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
        if (err === null) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean };
        if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
        if (signal.aborted) return reject(signal.reason);
        const why = e.killed ? `timed out after ${this.o.timeoutMs} ms` : e.message;
        reject(new SlurmCommandError(command, `${command} ${args.join(' ')}: ${why}`, null, stderr, { cause: err }));
      });
    });
  }

  private fail(command: string, args: readonly string[], r: Run): never {
    throw new SlurmCommandError(command, `${command} ${args.join(' ')} exited with ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`, r.code, r.stderr);
  }

  /** Submits `script` with `sbatch --parsable` and returns the job id. */
  async sbatch(script: string, options: readonly string[], signal: AbortSignal): Promise<string> {
    const args = ['--parsable', ...options, script];
    const r = await this.run('sbatch', args, signal);
    // `--parsable` prints "jobid" or "jobid;cluster".
    const id = /^(\d+)(?:;\S+)?\s*$/m.exec(r.stdout)?.[1];
    if (r.code !== 0 || id === undefined) this.fail('sbatch', args, r);
    return id;
  }

  /** The job's state from squeue, scontrol or sacct, in that order; `UNKNOWN` when all forgot it. */
  async jobInfo(jobId: string, signal: AbortSignal): Promise<JobInfo> {
    // squeue shows live jobs only: a finished one prints nothing (or "Invalid job id").
    const q = await this.run('squeue', ['-h', '-j', jobId, '-o', '%T|%r'], signal);
    const [state, reason] = q.stdout.trim().split('\n')[0]?.split('|') ?? [];
    const live = q.code === 0 ? parseState(state) : undefined;
    if (live !== undefined && !TERMINAL_STATES.has(live)) return { state: live, source: 'squeue', ...(reason ? { reason } : {}) };

    const s = await this.run('scontrol', ['show', 'job', '-o', jobId], signal);
    if (s.code === 0) {
      const info = parseScontrolJob(s.stdout);
      if (info !== undefined) return info;
    } else if (!/invalid job id/i.test(s.stderr)) {
      this.fail('scontrol', ['show', 'job', '-o', jobId], s);
    }

    if (this.sacctAvailable) {
      const args = ['-n', '-P', '-X', '-j', jobId, '-o', 'State,ExitCode'];
      const a = await this.run('sacct', args, signal);
      if (a.code !== 0 && /accounting storage is disabled|not running a supported accounting_storage/i.test(a.stderr + a.stdout)) {
        this.sacctAvailable = false; // no slurmdbd here: do not ask again
      } else if (a.code === 0) {
        const [st, exit] = a.stdout.trim().split('\n').at(-1)?.split('|') ?? [];
        const parsed = parseState(st);
        const code = exit?.split(':')[0];
        if (parsed !== undefined) return { state: parsed, source: 'sacct', ...(code !== undefined && /^\d+$/.test(code) ? { exitCode: Number(code) } : {}) };
      }
    }
    return { state: 'UNKNOWN', source: 'none' };
  }

  /**
   * Slurm's accounting of `jobIds` (issue 20): every allocation of each job (`-D`: a requeued job has
   * one per run), one line `JobIDRaw|State|ElapsedRaw|AllocTRES|Start|End`, times as Unix seconds.
   * Returned as run, not thrown: without slurmdbd sacct fails, and usage is then `unknown`.
   */
  async accounting(jobIds: readonly string[], signal: AbortSignal): Promise<Run> {
    const args = ['-n', '-P', '-X', '-D', '-j', jobIds.join(','), '-o', 'JobIDRaw,State,ElapsedRaw,AllocTRES,Start,End'];
    return this.run('sacct', args, signal, { ...this.o.env, SLURM_TIME_FORMAT: '%s' });
  }

  /** Ids of live jobs named `name` (to find a job submitted just before the agent died). */
  async jobsNamed(name: string, signal: AbortSignal): Promise<string[]> {
    const args = ['-h', '--name', name, '-o', '%i'];
    const r = await this.run('squeue', args, signal);
    if (r.code !== 0) this.fail('squeue', args, r);
    return r.stdout.split('\n').map((l) => l.trim()).filter((l) => /^\d+$/.test(l));
  }

  /** `scancel`s the job; cancelling a job that already ended is not an error. */
  async scancel(jobId: string, signal: AbortSignal, options: readonly string[] = []): Promise<void> {
    const args = [...options, jobId];
    const r = await this.run('scancel', args, signal);
    if (r.code !== 0 && !/already completing or completed|invalid job id/i.test(r.stderr)) this.fail('scancel', args, r);
  }

  /** Whether the controller answers (`sinfo` works). */
  async alive(signal: AbortSignal): Promise<boolean> {
    return this.run('sinfo', ['-h', '-o', '%P'], signal).then(
      (r) => r.code === 0,
      () => false,
    );
  }
}

/** `s` as one single-quoted shell word. */
export const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/** Exit code of a job submitted ahead whose model never came (its READY marker): it gave up waiting. */
export const AHEAD_GAVE_UP_EXIT = 69;

/** The wait of a job submitted before its round's task (`runner.submitAhead`). */
export interface ModelWait {
  /** The round directory whose `READY` marker the job waits for. */
  readonly roundDir: string;
  readonly pollMs: number;
  /** After this many seconds without the marker the job exits {@link AHEAD_GAVE_UP_EXIT}. */
  readonly giveUpS: number;
}

/**
 * The wait of an ahead job: polls for `READY` (the agent writes it last, by rename, after
 * spec.json and global/), then records the wait once in `MODEL_WAIT.json` (a requeued run, finding
 * the marker at once, keeps the first record). TERM/INT end the wait at once (scancel); USR1 is
 * ignored until the trainer runs.
 */
function modelWaitBlock(w: ModelWait): string {
  const dir = shellQuote(w.roundDir);
  const pollS = (w.pollMs / 1000).toFixed(3);
  return `# Submitted ahead (runner.submitAhead): no training until the agent writes READY, last.
trap 'exit 143' TERM INT
trap '' USR1
fedhpc_wait_t0=$(date +%s%3N)
fedhpc_give_up=$(( $(date +%s) + ${w.giveUpS} ))
while [ ! -e ${dir}/READY ]; do
  if [ "$(date +%s)" -ge "$fedhpc_give_up" ]; then
    echo "fedhpc-exit job=\${SLURM_JOB_ID:-none} restart=\${SLURM_RESTART_COUNT:-0} code=${AHEAD_GAVE_UP_EXIT} (no model after ${w.giveUpS} s)"
    exit ${AHEAD_GAVE_UP_EXIT}
  fi
  sleep ${pollS}
done
fedhpc_wait_t1=$(date +%s%3N)
if [ ! -e ${dir}/MODEL_WAIT.json ]; then
  printf '{"waitStartedMs":%s,"readyMs":%s,"modelWaitMs":%s}\n' "$fedhpc_wait_t0" "$fedhpc_wait_t1" "$((fedhpc_wait_t1 - fedhpc_wait_t0))" > ${dir}/MODEL_WAIT.json.tmp && mv -f ${dir}/MODEL_WAIT.json.tmp ${dir}/MODEL_WAIT.json
fi
echo "fedhpc-model-ready job=\${SLURM_JOB_ID:-none} waited_ms=$((fedhpc_wait_t1 - fedhpc_wait_t0))"
`;
}

/**
 * The part of the batch script that meets Slurm: runs `command` in the background, forwards
 * USR1/TERM/INT to it (a signal to the batch shell alone never reaches the trainer), waits, prints
 * the `fedhpc-start` / `fedhpc-exit` markers {@link stateFromOutput} reads, and in requeue mode
 * asks Slurm to requeue the job on exit 75. Exits with the trainer's code. With `wait` (a job
 * submitted ahead) the trainer starts only once the round's model is there.
 */
export function runBlock(command: string, requeue: boolean, wait?: ModelWait): string {
  return `# fedhpc run block (generated): trainer in the background, signals forwarded, exit recorded.
set +e  # a failing wait must not end the script before the exit is recorded
echo "fedhpc-start job=\${SLURM_JOB_ID:-none} restart=\${SLURM_RESTART_COUNT:-0} host=$(hostname)"
${wait === undefined ? '' : modelWaitBlock(wait)}fedhpc_child=
fedhpc_forward() { if [ -n "$fedhpc_child" ]; then kill -s "$1" "$fedhpc_child" 2>/dev/null || true; fi; }
trap 'fedhpc_forward USR1' USR1
trap 'fedhpc_forward TERM' TERM
trap 'fedhpc_forward INT' INT
${command} &
fedhpc_child=$!
while :; do
  wait "$fedhpc_child"; fedhpc_rc=$?
  kill -0 "$fedhpc_child" 2>/dev/null || break  # else: wait was interrupted by a trapped signal
done
if [ "$fedhpc_rc" -gt 128 ]; then wait "$fedhpc_child" 2>/dev/null; fedhpc_r=$?; [ "$fedhpc_r" -ne 127 ] && fedhpc_rc=$fedhpc_r; fi
echo "fedhpc-exit job=\${SLURM_JOB_ID:-none} restart=\${SLURM_RESTART_COUNT:-0} code=$fedhpc_rc"
if [ "$fedhpc_rc" -eq 75 ] && [ ${requeue ? 1 : 0} -eq 1 ] && [ -n "\${SLURM_JOB_ID:-}" ]; then
  # The one resume path of requeue mode: Slurm runs this job id again; the agent does not resubmit.
  scontrol requeue "$SLURM_JOB_ID" && echo "fedhpc-requeue job=$SLURM_JOB_ID"
fi
exit "$fedhpc_rc"`;
}

/**
 * What a job's output file says about how its last run ended, for a job Slurm has forgotten (no
 * sacct). The batch script prints `fedhpc-start` and `fedhpc-exit code=N` markers; slurmstepd
 * prints `*** JOB N ON host CANCELLED AT … DUE TO TIME LIMIT ***` and the like when it kills one.
 */
export function stateFromOutput(jobId: string, output: string): JobInfo {
  const runs = output.split(/^fedhpc-start .*$/m);
  const last = runs.at(-1) ?? '';
  const cancelled = new RegExp(`\\*\\*\\* JOB ${jobId} ON \\S+ CANCELLED AT \\S+(?: DUE TO ([A-Z ]+?))?(?: \\*\\*\\*| by )`).exec(last);
  if (cancelled) {
    const why = cancelled[1];
    const state: SlurmState =
      why === 'TIME LIMIT' ? 'TIMEOUT' : why === 'PREEMPTION' ? 'PREEMPTED' : why === 'NODE FAILURE' ? 'NODE_FAIL' : why === 'JOB REQUEUE' ? 'REQUEUED' : 'CANCELLED';
    return { state, source: 'none' };
  }
  const exit = /^fedhpc-exit .*code=(\d+)/m.exec(last);
  if (exit) {
    const exitCode = Number(exit[1]);
    return { state: exitCode === 0 ? 'COMPLETED' : 'FAILED', exitCode, source: 'none' };
  }
  return { state: 'UNKNOWN', source: 'none' };
}
