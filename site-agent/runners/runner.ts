/**
 * The contract between the agent and a training runner. A runner turns the global model file into
 * a local model file (the shard's result) and scores a model on the site's held-out data. The
 * agent computes the delta itself from the two files.
 */
import type { Run } from './slurm-cli.js';
import type { Allocation } from '../usage.js';

/** Progress of a training shard, forwarded to the coordinator as heartbeats. */
export interface TrainProgress {
  readonly step: number;
  readonly steps: number;
  readonly loss: number;
}

export interface TrainRequest {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  /** The global model the shard starts from: safetensors in the run's checkpoint dtype (F32, BF16 or F16 tensors). */
  readonly globalPath: string;
  readonly globalSha256: string;
  /** `<work>/round-<r>/`: the runner writes `out/model.safetensors` there. */
  readonly roundDir: string;
  /** Training settings of the run (opaque JSON from the coordinator, validated by the runner). */
  readonly train: Readonly<Record<string, unknown>>;
  readonly signal: AbortSignal;
  readonly onProgress: (p: TrainProgress) => void;
  /** When the coordinator stops waiting for this shard (ms since epoch); a queued job past it is reported. */
  readonly deadlineMs?: number | undefined;
  /**
   * The round is secure: a persistent trainer's snapshot of an earlier attempt is not reused (one
   * delta never goes out under two mask sets).
   */
  readonly secure?: boolean | undefined;
}

/** What a finished shard reports; `outPath` holds the local weights (F32, the global's names). */
export interface TrainResult {
  readonly outPath: string;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  readonly trainLoss: number;
  /** SHA-256 of what data this shard read (its data manifest). */
  readonly dataManifestSha256: string;
  /**
   * The busy span, Unix ms: when the first training step began and the last one ended (the
   * trainer's DONE.json, else the first and last `ts` of its progress.jsonl). The upload header
   * carries them so the coordinator can show the site's busy fraction. Absent or 0: not known (a
   * runner that does not say). Every runner of this repository fills them.
   */
  readonly trainStartedMs?: number;
  readonly trainFinishedMs?: number;
  /**
   * How long the shard's allocation held its nodes waiting for the global model before training
   * (ms): a Slurm job submitted ahead of its round's task (`runner.submitAhead`). Idle time, not
   * busy: it lies before `trainStartedMs`. Absent: the job did not wait (or was not submitted ahead).
   */
  readonly idleWaitMs?: number;
  /**
   * A persistent trainer's snapshot (overlapped runs): the steps between its previous snapshot and
   * the one that applied this round's global, and the milliseconds of steps in the busy span.
   */
  readonly appliedStaleness?: number;
  readonly busyMs?: number;
  /** How the shard's compute was allocated, measured into the round's receipt (site-agent/usage.ts). */
  readonly allocation?: Allocation;
  /**
   * Names this training's output (random hex, set by the agent when it saves the shard): an upload
   * of it is named by it, so a later attempt of the round can keep the bytes the coordinator
   * already verified (docs/protocol.md, "Reuse across attempts"). Absent: never named.
   */
  readonly shardId?: string;
}

export interface EvalResult {
  readonly loss: number;
  readonly samples: number;
}

/** A training runner (builtin, standin, command, slurm). */
export interface Runner {
  readonly kind: string;
  train(request: TrainRequest): Promise<TrainResult>;
  evaluate(modelPath: string, signal: AbortSignal): Promise<EvalResult>;
  /**
   * The run ended (or this site left it): work the runner started ahead for its next round (a
   * Slurm job submitted ahead) is cancelled. Never throws.
   */
  endRun?(runId: string): Promise<void>;
  /** The agent stops: work started ahead of a task that will not come is cancelled. Never throws. */
  close?(): Promise<void>;
  /** The scheduler's accounting of `jobIds` (Slurm's sacct), for the usage receipts declare. */
  accounting?(jobIds: readonly string[], signal: AbortSignal): Promise<Run>;
}
