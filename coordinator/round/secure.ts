/**
 * The secure-aggregation phases of the round scheduler (SecAgg+, Bonawitz et al. 2017; Bell et
 * al. 2020): `keys` and `shares` before training, `unmask` (consistency check, then share reveal)
 * after upload: their rows of the transition table. Pure, like the rest of the scheduler; imported
 * only by `machine.ts`; entering these phases is `secure-entry.ts`.
 */
import { entered, ok, refuse, required, type Ctx, type PhaseTable } from './transition.js';
import { abortAttempt, abortRun, enterAggregate, enterTraining } from './phase-entry.js';
import { deadlineOf } from './secure-entry.js';
import type {
  Effect,
  ExchangeProgress,
  KeysState,
  SharesState,
  StepResult,
  UnmaskState,
} from './types.js';
import { REFUSAL_CODES } from './types.js';


function withStatus(exchange: Readonly<Record<string, ExchangeProgress>>, status: ExchangeProgress): string[] {
  return Object.keys(exchange)
    .filter((s) => exchange[s] === status)
    .sort();
}

/**
 * Re-evaluates a key or share exchange: abort when fewer than needed sites can still finish it,
 * move on when nobody is waiting (or the deadline passed), otherwise stay.
 */
function settleExchange(s: KeysState | SharesState, ctx: Ctx, atDeadline: boolean): StepResult {
  const waiting = withStatus(s.exchange, 'waiting');
  const done = withStatus(s.exchange, 'done');
  const need = required(s.plan);
  if (done.length + (atDeadline ? 0 : waiting.length) < need) {
    return abortAttempt(s, `only ${done.length + (atDeadline ? 0 : waiting.length)} of ${need} required sites in ${s.phase}`, ctx, [...waiting, ...done]);
  }
  if (waiting.length > 0 && !atDeadline) return ok(ctx, s);
  const cancel: Effect[] = waiting.length > 0 ? [{ type: 'cancelSites', round: s.round, attempt: s.attempt, sites: waiting, reason: `${s.phase} deadline passed` }] : [];
  if (s.phase === 'keys') {
    // Sites lost during `keys` stay listed as dropped, so the round's record names them.
    const exchange: Record<string, ExchangeProgress> = {};
    for (const site of Object.keys(s.exchange)) exchange[site] = done.includes(site) ? 'waiting' : 'dropped';
    const shares: SharesState = { ...s, phase: 'shares', deadline: ctx.now + deadlineOf(s.plan, 'shares'), exchange };
    return ok(ctx, shares, [...cancel, ...entered(shares, 'shares'), { type: 'sendSharesTasks', round: s.round, attempt: s.attempt, sites: done }]);
  }
  return enterTraining(s, done, ctx, cancel, Object.keys(s.exchange).filter((x) => !done.includes(x)).sort());
}

function exchangeEvent(s: KeysState | SharesState, site: string, ctx: Ctx, to: ExchangeProgress, eventType: 'keysAdvertised' | 'sharesSubmitted' | 'siteFailed'): StepResult {
  const now = s.exchange[site];
  if (now === undefined) return refuse(s, { type: eventType } as never, REFUSAL_CODES.notInvited, `site ${site} is not part of ${s.phase} of round ${s.round}.${s.attempt}`);
  if (now !== 'waiting') return refuse(s, { type: eventType } as never, now === 'dropped' ? REFUSAL_CODES.notInvited : REFUSAL_CODES.duplicate, `${eventType} from ${site} while it is ${now}`);
  return settleExchange({ ...s, exchange: { ...s.exchange, [site]: to } }, ctx, false);
}

/** Moves the unmask phase on once every survivor that can still answer has answered. */
function settleUnmask(u: UnmaskState, ctx: Ctx, atDeadline: boolean): StepResult {
  const threshold = u.plan.secure?.threshold ?? 1;
  const survivors = u.participants.map((p) => p.site);
  const answered = u.step === 'consistency' ? u.signed : u.revealed;
  const asked = u.step === 'consistency' ? survivors : u.signed;
  const open = asked.filter((x) => !answered.includes(x) && !u.gone.includes(x));
  if (answered.length + (atDeadline ? 0 : open.length) < threshold) {
    return abortAttempt(u, `only ${answered.length + (atDeadline ? 0 : open.length)} of ${threshold} sites answered the ${u.step} step`, ctx, open);
  }
  if (open.length > 0 && !atDeadline) return ok(ctx, u);
  if (u.step === 'consistency') {
    // Only signers still here are asked to reveal; fewer than t of them could never unmask.
    const revealers = u.signed.filter((x) => !u.gone.includes(x));
    if (revealers.length < threshold) {
      return abortAttempt(u, `only ${revealers.length} of ${threshold} signers can still reveal`, ctx, revealers);
    }
    const reveal: UnmaskState = { ...u, step: 'reveal', deadline: ctx.now + deadlineOf(u.plan, 'unmask') };
    return ok(ctx, reveal, [
      { type: 'armDeadline', round: u.round, attempt: u.attempt, phase: 'unmask', at: reveal.deadline },
      { type: 'requestUnmask', round: u.round, attempt: u.attempt, sites: revealers, survivors, dropped: [...u.dropped] },
    ]);
  }
  return enterAggregate(u, u.participants, u.recordDropped, u.dropped, ctx, []);
}

function unmaskAnswer(u: UnmaskState, site: string, ctx: Ctx, step: UnmaskState['step'], eventType: 'survivorsSigned' | 'sharesRevealed'): StepResult {
  const survivors = u.participants.map((p) => p.site);
  const asked = step === 'consistency' ? survivors : u.signed;
  if (u.step !== step) return refuse(u, { type: eventType } as never, REFUSAL_CODES.invalidInPhase, `${eventType} during the ${u.step} step`);
  if (!asked.includes(site)) return refuse(u, { type: eventType } as never, REFUSAL_CODES.notInvited, `site ${site} was not asked in the ${step} step`);
  const list = step === 'consistency' ? u.signed : u.revealed;
  if (list.includes(site)) return refuse(u, { type: eventType } as never, REFUSAL_CODES.duplicate, `${site} answered the ${step} step twice`);
  const next: UnmaskState = step === 'consistency' ? { ...u, signed: [...u.signed, site].sort() } : { ...u, revealed: [...u.revealed, site].sort() };
  return settleUnmask(next, ctx, false);
}

/** The secure phases' rows of the transition table. */
export function secureTable(): { keys: PhaseTable<'keys'>; shares: PhaseTable<'shares'>; unmask: PhaseTable<'unmask'> } {
  type Row = (s: KeysState | SharesState, e: { site?: string; reason?: string }, ctx: Ctx) => StepResult;
  const disconnect: Row = (s, e, ctx) => {
    const site = e.site ?? '';
    const now = s.exchange[site];
    return now === 'waiting' || now === 'done' ? settleExchange({ ...s, exchange: { ...s.exchange, [site]: 'dropped' } }, ctx, false) : ok(ctx, s);
  };
  const exchangeRows = (advance: 'keysAdvertised' | 'sharesSubmitted'): Record<string, Row> => ({
    siteConnected: (s, _e, ctx) => ok(ctx, s),
    siteDisconnected: disconnect,
    siteExcused: (s, _e, ctx) => ok(ctx, s),
    [advance]: (s, e, ctx) => exchangeEvent(s, e.site ?? '', ctx, 'done', advance),
    siteFailed: (s, e, ctx) => exchangeEvent(s, e.site ?? '', ctx, 'dropped', 'siteFailed'),
    deadline: (s, _e, ctx) => settleExchange(s, ctx, true),
    abortRequested: (s, e, ctx) => abortRun(s, e.reason ?? 'aborted', ctx, Object.keys(s.exchange).filter((x) => s.exchange[x] !== 'dropped')),
  });
  return {
    keys: exchangeRows('keysAdvertised') as PhaseTable<'keys'>,
    shares: exchangeRows('sharesSubmitted') as PhaseTable<'shares'>,
    unmask: {
      siteConnected: (s, _e, ctx) => ok(ctx, s),
      siteExcused: (s, _e, ctx) => ok(ctx, s),
      // A survivor that goes away cannot answer; its input stays in the sum.
      siteDisconnected: (s, e, ctx) => (s.participants.some((p) => p.site === e.site) && !s.gone.includes(e.site) ? settleUnmask({ ...s, gone: [...s.gone, e.site].sort() }, ctx, false) : ok(ctx, s)),
      survivorsSigned: (s, e, ctx) => unmaskAnswer(s, e.site, ctx, 'consistency', 'survivorsSigned'),
      sharesRevealed: (s, e, ctx) => unmaskAnswer(s, e.site, ctx, 'reveal', 'sharesRevealed'),
      siteFailed: (s, e, ctx) => {
        if (!s.participants.some((p) => p.site === e.site)) return refuse(s, e, REFUSAL_CODES.notInvited, `site ${e.site} is not a survivor of this attempt`);
        if (s.gone.includes(e.site)) return refuse(s, e, REFUSAL_CODES.duplicate, `site ${e.site} already left the unmask phase`);
        return settleUnmask({ ...s, gone: [...s.gone, e.site].sort() }, ctx, false);
      },
      deadline: (s, _e, ctx) => settleUnmask(s, ctx, true),
      abortRequested: (s, e, ctx) => abortRun(s, e.reason, ctx, s.participants.map((p) => p.site)),
    },
  };
}
