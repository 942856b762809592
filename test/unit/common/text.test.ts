/**
 * common/text.ts: which characters are controls, how `printable` renders them for people, and how
 * `safeJson` keeps JSON exact while escaping what JSON leaves raw.
 */
import { describe, expect, it } from 'vitest';
import { codePointName, findControl, isControl, printable, safeJson } from '../../../common/text.js';
import { TERMINAL_CONTROLS } from '../../helpers/controls.js';

describe('isControl and findControl', () => {
  it('count C0, DEL, C1, the bidi controls, the line separators and lone surrogates as controls', () => {
    for (const c of TERMINAL_CONTROLS) {
      const cp = c.codePointAt(0) ?? -1;
      expect(isControl(cp), codePointName(cp)).toBe(true);
    }
    for (const cp of [0x061c, 0x200e, 0x200f, 0x2028, 0x2029, 0xd800, 0xdfff]) expect(isControl(cp)).toBe(true);
  });

  it('leave printable text alone: ASCII, accents, CJK, emoji, right-to-left letters', () => {
    for (const cp of [0x20, 0x41, 0x5c, 0x7e, 0xa0, 0xe9, 0x4e2d, 0x1f600, 0x05d0, 0x0627, 0x202f, 0x2065, 0x206a]) expect(isControl(cp)).toBe(false);
    expect(findControl('Zürich – 中央 😀 שלום')).toBeUndefined();
  });

  it('find the first control with its UTF-16 index, past astral characters', () => {
    expect(findControl('ok\x1b[2J')).toEqual({ codePoint: 0x1b, index: 2 });
    expect(findControl('😀\u202eevil')).toEqual({ codePoint: 0x202e, index: 2 });
    expect(findControl('a\ud800b')).toEqual({ codePoint: 0xd800, index: 1 });
  });
});

describe('printable', () => {
  it('renders controls below U+0100 as \\xNN and the others as \\u{NNNN}', () => {
    expect(printable('\x1b[2J\x07\x00\x7f\x9b')).toBe('\\x1b[2J\\x07\\x00\\x7f\\x9b');
    expect(printable('abc\u202Edef\u2066')).toBe('abc\\u{202E}def\\u{2066}');
    expect(printable('line\nbreak\ttab\r')).toBe('line\\x0abreak\\x09tab\\x0d');
  });

  it('keeps newlines only when asked to, and escapes the rest of the line still', () => {
    expect(printable('a\nb\x1b', { keepNewlines: true })).toBe('a\nb\\x1b');
  });

  it('returns text without controls unchanged, backslashes included, so escaping twice is escaping once', () => {
    const plain = 'C:\\path\\x1b is text, 中央 😀';
    expect(printable(plain)).toBe(plain);
    const all = TERMINAL_CONTROLS.join('');
    expect(printable(printable(all))).toBe(printable(all));
  });

  it('leaves no control in its output, whatever the input', () => {
    const all = `x${TERMINAL_CONTROLS.join('y')}z\u061c\u200e\u2028\ud800`;
    expect(findControl(printable(all))).toBeUndefined();
    expect(findControl(printable(all, { keepNewlines: true }).replaceAll('\n', ''))).toBeUndefined();
  });
});

describe('safeJson', () => {
  it('parses back to the same value, controls included (--json output stays exact)', () => {
    const value = { text: TERMINAL_CONTROLS.join(''), n: 1.5, list: ['\u2028', '\u061c'], nested: { x: '\x9b' } };
    expect(JSON.parse(safeJson(value))).toEqual(value);
  });

  it('holds no control character itself: JSON escapes C0, safeJson escapes DEL, C1 and bidi too', () => {
    const text = safeJson({ text: TERMINAL_CONTROLS.join('') });
    expect(findControl(text)).toBeUndefined();
    expect(text).toContain('\\u001b');
    expect(text).toContain('\\u009b');
    expect(text).toContain('\\u202e');
  });

  it('is JSON.stringify for text without controls', () => {
    const value = { a: 'plain', b: [1, 2], c: 'ünïcödé 😀' };
    expect(safeJson(value)).toBe(JSON.stringify(value));
  });
});
