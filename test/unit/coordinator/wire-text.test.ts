/**
 * The wire edge's checks of what sites and admins send as text and as evaluation figures
 * (coordinator/service/wire.ts), and the printable messages of `CoordinatorError`.
 */
import { describe, expect, it } from 'vitest';
import { findControl } from '../../../common/text.js';
import { CoordinatorError, toServiceError, type CoordinatorErrorCode } from '../../../coordinator/core/errors.js';
import { TEXT_LIMITS, evalReportFromWire, failureFromWire, labelFromWire, lineFromWire, messageFromWire } from '../../../coordinator/service/wire.js';
import type { EvalReport__Output } from '../../../proto/index.js';
import { EVIL_TEXT, TERMINAL_CONTROLS } from '../../helpers/controls.js';

/** The error `fn` throws: it must be a `CoordinatorError` with `code`. */
function refused(fn: () => unknown, code: CoordinatorErrorCode): CoordinatorError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(CoordinatorError);
  expect((thrown as CoordinatorError).code).toBe(code);
  return thrown as CoordinatorError;
}

const hex = (cp: number): string => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;

describe('labels (agent version, activity, failure code)', () => {
  it('accepts printable ASCII of up to 64 characters', () => {
    expect(labelFromWire('fedhpc-agent 0.1.0 (linux/x64)', 'agent version')).toBe('fedhpc-agent 0.1.0 (linux/x64)');
    expect(labelFromWire('x'.repeat(TEXT_LIMITS.label), 'activity')).toHaveLength(64);
    expect(labelFromWire('', 'activity')).toBe('');
  });

  it('refuses every control with TEXT_INVALID, naming the field and the character, never echoing it', () => {
    for (const c of TERMINAL_CONTROLS) {
      const e = refused(() => labelFromWire(`idle${c}`, 'activity'), 'TEXT_INVALID');
      expect(e.message).toBe(`activity must be printable ASCII; character 4 is ${hex(c.codePointAt(0) ?? 0)}`);
      expect(e.context).toEqual({ field: 'activity' });
    }
  });

  it('refuses non-ASCII letters and more than 64 characters', () => {
    expect(refused(() => labelFromWire('trainé', 'failure code'), 'TEXT_INVALID').message).toMatch(/character 5 is U\+00E9/);
    expect(refused(() => labelFromWire('x'.repeat(65), 'agent version'), 'TEXT_INVALID').message).toBe('agent version must be at most 64 characters, got 65');
  });
});

describe('lines (an admin reason, a run file name)', () => {
  it('accepts one line of any script up to 512 characters', () => {
    expect(lineFromWire('wrong data – see ticket 42, 中央, שלום 😀', 'reason')).toBe('wrong data – see ticket 42, 中央, שלום 😀');
    expect(lineFromWire('r'.repeat(TEXT_LIMITS.line), 'reason')).toHaveLength(512);
  });

  it('refuses every control (tab and newline included) and more than 512 characters with TEXT_INVALID', () => {
    for (const c of TERMINAL_CONTROLS) {
      const e = refused(() => lineFromWire(`😀${c}`, 'reason'), 'TEXT_INVALID');
      expect(e.message).toBe(`reason must be one line without control or bidi characters; character 2 is ${hex(c.codePointAt(0) ?? 0)}`);
    }
    refused(() => lineFromWire('r'.repeat(513), 'reason'), 'TEXT_INVALID');
  });
});

describe('relayed messages (what a trainer printed)', () => {
  it('keeps them, with every control escaped', () => {
    const m = messageFromWire(`Traceback:\n  File "x.py"\x1b[31m boom\x1b[0m ${EVIL_TEXT}`);
    expect(findControl(m)).toBeUndefined();
    expect(m.startsWith('Traceback:\\x0a  File "x.py"\\x1b[31m boom\\x1b[0m evil\\x00\\x01')).toBe(true);
  });

  it('cuts them at 1024 characters and says how long they were', () => {
    expect(messageFromWire('m'.repeat(TEXT_LIMITS.message))).toBe('m'.repeat(1024));
    expect(messageFromWire('m'.repeat(5000))).toBe(`${'m'.repeat(1024)}… (5000 characters)`);
  });

  it('checks a failure report: a label for the code, an escaped message', () => {
    const base = { runId: 'run-1', round: '3', attempt: 1, retryable: false };
    expect(failureFromWire({ ...base, code: 'TRAINING_FAILED', message: `bad\x07${'\u202e'}` })).toEqual({ round: 3, attempt: 1, code: 'TRAINING_FAILED', message: 'bad\\x07\\u{202E}' });
    refused(() => failureFromWire({ ...base, code: `X${'\x1b'}[2J`, message: '' }), 'TEXT_INVALID');
  });
});

describe('evaluation reports at the wire edge', () => {
  const good: EvalReport__Output = { runId: 'run-1', modelRound: '0', modelSha256: 'a'.repeat(64), loss: 2.5, samples: '1000' };

  it('converts a sane report to numbers', () => {
    expect(evalReportFromWire(good)).toEqual({ runId: 'run-1', modelRound: 0, modelSha256: 'a'.repeat(64), loss: 2.5, samples: 1000 });
  });

  it('stores a loss of -0 as 0, so it reads the same after the journal', () => {
    expect(Object.is(evalReportFromWire({ ...good, loss: -0 }).loss, 0)).toBe(true);
  });

  it('refuses a loss that is not finite or below 0, and samples that are not a positive safe integer (EVAL_INVALID)', () => {
    for (const loss of [Number.NaN, Infinity, -Infinity, -5, -Number.MIN_VALUE]) refused(() => evalReportFromWire({ ...good, loss }), 'EVAL_INVALID');
    for (const samples of ['0', '9007199254740993', '18446744073709551615', '-1', '']) refused(() => evalReportFromWire({ ...good, samples }), 'EVAL_INVALID');
    expect(refused(() => evalReportFromWire({ ...good, loss: -5 }), 'EVAL_INVALID').message).toBe('evaluation report refused: loss must be a finite number of at least 0, got -5');
  });

  it('refuses a report without a run id or a model hash (EVAL_INVALID)', () => {
    refused(() => evalReportFromWire({ ...good, runId: '' }), 'EVAL_INVALID');
    refused(() => evalReportFromWire({ ...good, runId: EVIL_TEXT }), 'EVAL_INVALID');
    refused(() => evalReportFromWire({ ...good, modelSha256: 'A'.repeat(64) }), 'EVAL_INVALID');
    refused(() => evalReportFromWire({ ...good, modelRound: '2'.repeat(20) }), 'EVAL_INVALID');
  });
});

describe('CoordinatorError', () => {
  it('keeps its message and its string context printable, and so the details a caller receives', () => {
    const e = new CoordinatorError('SITE_MISMATCH', `certificate is for site-1, but the message claims ${EVIL_TEXT}`, { claimed: EVIL_TEXT, round: 3 });
    expect(findControl(e.message)).toBeUndefined();
    expect(findControl(String(e.context['claimed']))).toBeUndefined();
    expect(e.context['round']).toBe(3);
    expect(findControl(toServiceError(e).details)).toBeUndefined();
    expect(e.message).toContain('claims evil\\x00\\x01');
  });
});
