/**
 * cli/table.ts: every cell is made printable before the columns are measured, so text from the
 * network can neither steer the terminal nor break a row into lines of its own.
 */
import { describe, expect, it } from 'vitest';
import { formatTable } from '../../../cli/table.js';
import { EVIL_TEXT, controlsIn } from '../../helpers/controls.js';

describe('formatTable', () => {
  it('escapes controls in cells and headers, one row per line, columns aligned to the escaped width', () => {
    const out = formatTable(['site', 'activity'], [
      ['site-1', 'training'],
      ['site-2', 'x\x1b[2J\ny\u202e'],
    ]);
    expect(out.split('\n')).toEqual([
      'site    activity',
      `------  ${'-'.repeat('x\\x1b[2J\\x0ay\\u{202E}'.length)}`,
      'site-1  training',
      'site-2  x\\x1b[2J\\x0ay\\u{202E}',
    ]);
  });

  it('prints none of the controls it is fed', () => {
    const out = formatTable([EVIL_TEXT], [[EVIL_TEXT], [`a${EVIL_TEXT}`]]);
    expect(controlsIn(out)).toEqual([]);
    expect(out.split('\n')).toHaveLength(4);
  });
});
