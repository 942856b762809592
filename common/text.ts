/**
 * Text from the network is data, never terminal control. One definition of the characters that
 * steer a terminal or reorder what it shows, one escaping function for every human-facing output
 * (`printable`), and one for JSON output that keeps its values exact (`safeJson`).
 *
 * Controls: C0 (U+0000–U+001F, tab and newline included: a cell or a log line is one line), DEL
 * (U+007F), C1 (U+0080–U+009F: U+009B is CSI to terminals that read 8-bit controls), Unicode's bidi
 * controls (U+061C, U+200E, U+200F, the embeddings and overrides U+202A–U+202E, the isolates
 * U+2066–U+2069), the line and paragraph separators U+2028/U+2029, and lone surrogates (half a
 * character, which a UTF-8 writer would replace).
 */

/** Whether code point `cp` is one of the controls above. */
export function isControl(cp: number): boolean {
  return (
    cp <= 0x1f ||
    (cp >= 0x7f && cp <= 0x9f) ||
    cp === 0x061c ||
    cp === 0x200e ||
    cp === 0x200f ||
    cp === 0x2028 ||
    cp === 0x2029 ||
    (cp >= 0x202a && cp <= 0x202e) ||
    (cp >= 0x2066 && cp <= 0x2069) ||
    (cp >= 0xd800 && cp <= 0xdfff)
  );
}

/** The first control in `text`: its code point and its index in UTF-16 units; undefined when none. */
export function findControl(text: string): { readonly codePoint: number; readonly index: number } | undefined {
  for (let i = 0; i < text.length; ) {
    const cp = text.codePointAt(i) ?? 0;
    if (isControl(cp)) return { codePoint: cp, index: i };
    i += cp > 0xffff ? 2 : 1;
  }
  return undefined;
}

/** `U+001B`: how a message names a code point. */
export function codePointName(cp: number): string {
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Options of {@link printable}. */
export interface PrintableOptions {
  /** Keep `\n` as a line break (text the program itself laid out in lines); escaped otherwise. */
  readonly keepNewlines?: boolean;
}

/**
 * `text` with every control rendered visibly: `\xNN` below U+0100 (ESC is `\x1b`), `\u{NNNN}`
 * above (`\u{202E}`). Everything else passes unchanged, backslashes included, so applying it twice
 * gives the same text as once (what was stored escaped is not escaped again) — at the price that
 * a literal `\x1b` typed by someone reads the same as an escaped ESC. For people, not for parsing.
 */
export function printable(text: string, o: PrintableOptions = {}): string {
  if (findControl(text) === undefined) return text;
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    if (!isControl(cp) || (o.keepNewlines === true && cp === 0x0a)) out += ch;
    else out += cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16).toUpperCase()}}`;
  }
  return out;
}

/**
 * `JSON.stringify(value)` with the controls JSON leaves raw (DEL, C1, bidi controls, U+2028/U+2029)
 * written as `\uNNNN` escapes too: the text parses to the very same value (`--json` output stays
 * exact), and printing it cannot steer a terminal. They can only occur inside strings, where the
 * escape is valid JSON.
 */
export function safeJson(value: unknown): string {
  const json = JSON.stringify(value);
  if (json === undefined) return 'null';
  return json.replace(/[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
