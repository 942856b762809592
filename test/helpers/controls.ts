/**
 * The characters issue 14 names as terminal control, for tests that feed them to every free-text
 * field and check what people are shown: every C0 control, DEL, every C1 control, and the bidi
 * embeddings, overrides (U+202A–U+202E) and isolates (U+2066–U+2069).
 */

/** Each control as a one-character string. */
export const TERMINAL_CONTROLS: readonly string[] = [
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)),
  '\x7f',
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(0x80 + i)),
  ...[0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069].map((cp) => String.fromCodePoint(cp)),
];

/** All of them in one string between visible words, as an attacker would send them. */
export const EVIL_TEXT = `evil${TERMINAL_CONTROLS.join('')}text`;

/** The controls found in `output` (newline excepted: it separates the lines a command prints), as U+NNNN. */
export function controlsIn(output: string): string[] {
  const found = new Set<string>();
  for (const c of TERMINAL_CONTROLS) {
    if (c !== '\n' && output.includes(c)) found.add(`U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`);
  }
  return [...found];
}
