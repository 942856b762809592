/**
 * Reads a JSON config file and validates it with one zod schema: parsed once, frozen, and every
 * error names the file and the field. Relative paths in the file resolve against its folder.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';

/** A config file could not be read, parsed or validated. `issues` name the fields. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly file: string,
    readonly issues: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`invalid config ${file}:\n  ${issues.join('\n  ')}`, options);
    this.name = 'ConfigError';
  }
}

/** Formats zod issues as `field.path: message` lines. */
export function formatZodIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join('.') : '(root)';
    if (issue.code === 'unrecognized_keys') {
      const at = issue.path.length > 0 ? `${path}.` : '';
      return issue.keys.map((k) => `${at}${k}: unknown field`).join('; ');
    }
    return `${path}: ${issue.message}`;
  });
}

/** Deep-freezes a parsed config so no part of the program can mutate it. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

/**
 * Loads `file`, validates it with `schema` and returns the frozen result. Throws ConfigError
 * naming the file and each offending field. `resolvePaths` rewrites relative paths after parsing.
 */
export function loadConfigFile<S extends z.ZodTypeAny>(
  file: string,
  schema: S,
  resolvePaths?: (config: z.output<S>, relativeTo: (p: string) => string) => z.output<S>,
): z.output<S> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(file, [`cannot read: ${(cause as Error).message}`], { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(file, [`not valid JSON: ${(cause as Error).message}`], { cause });
  }
  return parseConfig(file, json, schema, resolvePaths);
}

/** Validates an already-parsed object as if it came from `file`. */
export function parseConfig<S extends z.ZodTypeAny>(
  file: string,
  json: unknown,
  schema: S,
  resolvePaths?: (config: z.output<S>, relativeTo: (p: string) => string) => z.output<S>,
): z.output<S> {
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ConfigError(file, formatZodIssues(parsed.error));
  const base = dirname(resolve(file));
  const rel = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const value = resolvePaths ? resolvePaths(parsed.data, rel) : parsed.data;
  return deepFreeze(value);
}
