/**
 * When each phase of each round attempt started and ended, from the event bus, for `admin round N`
 * and the phase-duration metric. In memory, bounded to the latest {@link TIMELINE_ATTEMPTS}
 * attempts: phase timings are observations, not journaled state.
 */
import { invariant } from '../../aggregation/index.js';
import type { BusEvent, EventBus } from '../observe/events.js';

/** Attempts whose phases are kept. */
export const TIMELINE_ATTEMPTS = 1000;

/** One phase of one attempt. */
export interface PhaseSpan {
  readonly phase: string;
  readonly startedMs: number;
  /** Undefined while the phase is open. */
  endedMs: number | undefined;
}

/** Phase spans per `round.attempt`. */
export class RoundTimeline {
  private readonly attempts = new Map<string, PhaseSpan[]>();
  private readonly listeners = new Set<(span: PhaseSpan) => void>();

  constructor(bus: EventBus) {
    bus.subscribe((e) => this.onEvent(e));
  }

  /** Called with each phase span as it closes. */
  onPhaseEnded(listener: (span: PhaseSpan) => void): void {
    this.listeners.add(listener);
  }

  /** Phases of `round.attempt` of `runId`, in order. */
  phases(runId: string, round: number, attempt: number): readonly PhaseSpan[] {
    return this.attempts.get(`${runId}/${round}.${attempt}`) ?? [];
  }

  private close(key: string, at: number): void {
    const open = this.attempts.get(key)?.at(-1);
    if (!open || open.endedMs !== undefined) return;
    open.endedMs = at;
    for (const l of this.listeners) l(open);
  }

  private onEvent(e: BusEvent): void {
    const b = e.body as { runId?: string; round?: number; attempt?: number; phase?: string };
    if (b.round === undefined || b.attempt === undefined || b.runId === undefined) return;
    const key = `${b.runId}/${b.round}.${b.attempt}`;
    if (e.kind === 'phase.changed' && b.phase) {
      this.close(key, e.ts);
      let spans = this.attempts.get(key);
      if (!spans) {
        this.attempts.set(key, (spans = []));
        if (this.attempts.size > TIMELINE_ATTEMPTS) {
          const oldest = this.attempts.keys().next().value;
          invariant(oldest !== undefined, 'a timeline over its capacity has an oldest attempt');
          this.attempts.delete(oldest);
        }
      }
      spans.push({ phase: b.phase, startedMs: e.ts, endedMs: undefined });
    } else if (e.kind === 'round.committed' || e.kind === 'round.aborted') {
      this.close(key, e.ts);
    }
  }
}
