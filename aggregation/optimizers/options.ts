/**
 * Server optimizer options with the defaults of the papers they come from, validated by hand:
 * `aggregation/` imports no package (see DESIGN.md, Layout), so no zod here.
 */
import type { AggregationErrorCode } from '../errors.js';
import { type Result, err, ok } from '../result.js';

/** Names of the server optimizers, in the order they are documented. */
export const OPTIMIZER_NAMES = ['fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad', 'diloco'] as const;

/** One of {@link OPTIMIZER_NAMES}. */
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];

type Range = 'positive' | 'unit'; // (0, ∞) finite | [0, 1)

const PARAM_RANGES = { lr: 'positive', momentum: 'unit', beta1: 'unit', beta2: 'unit', tau: 'positive' } as const satisfies Record<string, Range>;

type ParamName = keyof typeof PARAM_RANGES;

/** Hyper-parameters and defaults per optimizer. */
export const OPTIMIZER_DEFAULTS = {
  fedavg: { lr: 1 },
  fedavgm: { lr: 1, momentum: 0.9 },
  // Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2.
  fedadam: { lr: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
  fedyogi: { lr: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
  fedadagrad: { lr: 0.01, beta1: 0.9, tau: 1e-3 },
  // Douillard et al. 2023, "DiLoCo": outer SGD with Nesterov momentum.
  diloco: { lr: 0.7, momentum: 0.9 },
} as const satisfies Record<OptimizerName, Partial<Record<ParamName, number>>>;

type Defaults = typeof OPTIMIZER_DEFAULTS;

/** {@link createOptimizer} options: `name` plus any of that optimizer's hyper-parameters. */
export type OptimizerOptions = {
  [N in OptimizerName]: { readonly name: N } & { readonly [P in keyof Defaults[N]]?: number };
}[OptimizerName];

/** {@link OptimizerOptions} with every default filled in. */
export type ResolvedOptimizerOptions = {
  [N in OptimizerName]: { readonly name: N } & { readonly [P in keyof Defaults[N]]: number };
}[OptimizerName];

function isName(value: unknown): value is OptimizerName {
  return typeof value === 'string' && (OPTIMIZER_NAMES as readonly string[]).includes(value);
}

function checkParam(key: ParamName, value: unknown): string | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return `${key}: expected a finite number, got ${JSON.stringify(value)}`;
  if (PARAM_RANGES[key] === 'positive' && !(value > 0)) return `${key}: must be > 0, got ${value}`;
  if (PARAM_RANGES[key] === 'unit' && !(value >= 0 && value < 1)) return `${key}: must be in [0, 1), got ${value}`;
  return undefined;
}

/**
 * Parses and defaults optimizer options. Unknown keys and out-of-range values are reported, never
 * dropped or clamped; failures carry code `OPTIONS_INVALID` and one issue per bad field.
 */
export function parseOptimizerOptions(input: unknown): Result<ResolvedOptimizerOptions, AggregationErrorCode> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return err('OPTIONS_INVALID', 'options: expected an object');
  const record = input as Record<string, unknown>;
  if (!isName(record.name)) {
    return err('OPTIONS_INVALID', `name: expected one of ${OPTIMIZER_NAMES.join(', ')}, got ${JSON.stringify(record.name)}`);
  }
  const defaults: Readonly<Record<string, number>> = OPTIMIZER_DEFAULTS[record.name];
  const resolved: Record<string, unknown> = { name: record.name, ...defaults };
  const issues: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (key === 'name' || value === undefined) continue;
    if (!(key in defaults)) {
      issues.push(`${key}: not a parameter of ${record.name} (expected ${Object.keys(defaults).join(', ')})`);
      continue;
    }
    const issue = checkParam(key as ParamName, value);
    if (issue === undefined) resolved[key] = value;
    else issues.push(issue);
  }
  if (issues.length > 0) return err('OPTIONS_INVALID', issues);
  return ok(Object.freeze(resolved) as ResolvedOptimizerOptions);
}

/** The default hyper-parameters of every optimizer, for printing at start-up and in docs. */
export function optimizerDefaults(): Readonly<Record<OptimizerName, Readonly<Record<string, number>>>> {
  return OPTIMIZER_DEFAULTS;
}

// Shared defaults must not be mutable by whoever prints them.
for (const params of Object.values(OPTIMIZER_DEFAULTS)) Object.freeze(params);
Object.freeze(OPTIMIZER_DEFAULTS);
