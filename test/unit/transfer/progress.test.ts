/** Transfer progress as the agent shows and reports it: bytes, rate, ETA; one TTY line or log lines. */
import { describe, expect, it } from 'vitest';
import { testLogger } from '../../helpers/logger.js';
import { TransferMeter, eta } from '../../../site-agent/progress.js';

describe('TransferMeter', () => {
  it('measures rate and ETA and redraws one terminal line', () => {
    let now = 0;
    const lines: string[] = [];
    const m = new TransferMeter('upload', 10 * 1024 * 1024, testLogger().logger, { tty: true, write: (l) => lines.push(l) }, () => now);
    for (let i = 1; i <= 4; i++) {
      now = i * 1000;
      m.update(i * 1024 * 1024);
    }
    const s = m.snapshot();
    expect(s).toMatchObject({ direction: 'upload', bytes: 4 * 1024 * 1024, total: 10 * 1024 * 1024 });
    expect(s.rateBytesPerS).toBeCloseTo(1024 * 1024, -3);
    expect(eta(s)).toBeCloseTo(6, 0);
    expect(lines.every((l) => l.startsWith('\r') && !l.includes('\n'))).toBe(true);
    expect(lines[lines.length - 1]).toContain('upload 4.0/10.0 MiB (40.0%) 1.0 MiB/s ETA 6 s');
    m.finish();
    expect(lines[lines.length - 1]).toMatch(/\n$/);
  });

  it('writes nothing to a non-terminal sink (it logs instead) and has no ETA before any rate', () => {
    const lines: string[] = [];
    const m = new TransferMeter('download', 100, testLogger().logger, { tty: false, write: (l) => lines.push(l) }, () => 0);
    m.update(0);
    expect(lines).toEqual([]);
    expect(eta(m.snapshot())).toBe(-1);
  });
});
