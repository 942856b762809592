/**
 * A round's training budget, `run.train.budget` (issue 16): `{ seconds: S }` or `{ tokens: T }`,
 * exactly one, positive. The coordinator checks it at run start and sizes weights by it; the site
 * agent's runners train until it is spent (site-agent/runners/budget.ts). One schema for both, so
 * a budget one side accepts the other does too.
 */
import { z } from 'zod';

export const trainBudgetSchema = z.union([
  z.object({ seconds: z.number().positive().finite() }).strict(),
  z.object({ tokens: z.number().int().positive().max(Number.MAX_SAFE_INTEGER) }).strict(),
]);

/** A parsed budget. */
export type TrainBudget = z.output<typeof trainBudgetSchema>;
