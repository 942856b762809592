/**
 * Transfer progress: bytes, rate and ETA of the download or upload in progress. On a terminal the
 * agent redraws one line on stderr; otherwise it logs a line every few seconds (pino, with site,
 * round and phase). Heartbeats carry the latest figures to the coordinator.
 */
import type { Logger } from '../common/logger.js';

/** The figures a heartbeat reports. */
export interface TransferSnapshot {
  readonly direction: 'upload' | 'download';
  readonly bytes: number;
  readonly total: number;
  readonly rateBytesPerS: number;
}

/** Where progress goes: a TTY line, or log lines. */
export interface ProgressSink {
  readonly tty: boolean;
  write(line: string): void;
}

/** stderr, as a TTY sink when it is one. */
export function stderrSink(): ProgressSink {
  return { tty: process.stderr.isTTY === true, write: (line) => process.stderr.write(line) };
}

const MiB = 1024 * 1024;

/** Measures one transfer and shows it. */
export class TransferMeter {
  private bytes = 0;
  private rate = 0;
  private lastAt: number;
  private lastBytes = 0;
  private lastShown = 0;
  private readonly started: number;

  constructor(
    readonly direction: 'upload' | 'download',
    readonly total: number,
    private readonly log: Logger,
    private readonly sink: ProgressSink,
    private readonly now: () => number = Date.now,
    private readonly everyMs = { tty: 250, log: 10_000 },
  ) {
    this.started = now();
    this.lastAt = this.started;
  }

  /** Records that `done` bytes of `total` are through. */
  update(done: number): void {
    this.bytes = done;
    const t = this.now();
    if (t - this.lastAt >= 500) {
      // Exponential smoothing over half-second samples: steady enough for an ETA.
      const sample = ((done - this.lastBytes) * 1000) / (t - this.lastAt);
      this.rate = this.rate === 0 ? sample : 0.7 * this.rate + 0.3 * sample;
      this.lastAt = t;
      this.lastBytes = done;
    }
    if (t - this.lastShown >= (this.sink.tty ? this.everyMs.tty : this.everyMs.log)) {
      this.lastShown = t;
      this.show();
    }
  }

  /** The figures for a heartbeat. */
  snapshot(): TransferSnapshot {
    const elapsed = (this.now() - this.started) / 1000;
    const rate = this.rate > 0 ? this.rate : elapsed > 0 ? this.bytes / elapsed : 0;
    return { direction: this.direction, bytes: this.bytes, total: this.total, rateBytesPerS: rate };
  }

  /** Ends the TTY line (or logs the total). */
  finish(): void {
    const s = this.snapshot();
    if (this.sink.tty) this.sink.write(`\r${this.line(s)}\n`);
    else this.log.info({ direction: s.direction, bytes: s.bytes, total: s.total, seconds: (this.now() - this.started) / 1000 }, `${this.direction} finished`);
  }

  private show(): void {
    const s = this.snapshot();
    if (this.sink.tty) this.sink.write(`\r${this.line(s)}\x1b[K`);
    else this.log.info({ direction: s.direction, bytes: s.bytes, total: s.total, rateBytesPerS: Math.round(s.rateBytesPerS), etaS: eta(s) }, `${this.direction} progress`);
  }

  private line(s: TransferSnapshot): string {
    const pct = s.total > 0 ? ((100 * s.bytes) / s.total).toFixed(1) : '0.0';
    const e = eta(s);
    return `${s.direction} ${(s.bytes / MiB).toFixed(1)}/${(s.total / MiB).toFixed(1)} MiB (${pct}%) ${(s.rateBytesPerS / MiB).toFixed(1)} MiB/s ETA ${e < 0 ? '?' : `${Math.ceil(e)} s`}`;
  }
}

/** The figures as `HeartbeatRequest.transfer` carries them. */
export function wireProgress(s: TransferSnapshot): { direction: string; bytes: number; totalBytes: number; rateBytesPerS: number } {
  return { direction: s.direction, bytes: s.bytes, totalBytes: s.total, rateBytesPerS: s.rateBytesPerS };
}

/** Seconds left at the current rate (-1: unknown). */
export function eta(s: TransferSnapshot): number {
  return s.rateBytesPerS > 0 ? Math.max(0, s.total - s.bytes) / s.rateBytesPerS : -1;
}
