/**
 * Overlapped rounds, `run.train.overlap` (issue 17; docs/protocol.md, "The persistent trainer"):
 * each site runs one trainer for the whole run, which applies each round's global model without
 * stopping. `mode` is `whole-model` (P staggered fragments are not built: docs/decisions.md),
 * `maxAppliedSteps` bounds the steps a sync's global may be applied late (the coordinator refuses
 * an upload past it with STALE_TRAINER), `alpha` mixes the correction (1: apply it whole). The
 * coordinator checks it at run start, the agent before it starts a trainer: one schema for both.
 */
import { z } from 'zod';

export const trainOverlapSchema = z
  .object({
    mode: z.literal('whole-model', { errorMap: () => ({ message: 'mode must be "whole-model": fragment-wise syncs (Streaming DiLoCo\'s P fragments) are not built, see docs/decisions.md' }) }),
    maxAppliedSteps: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
    alpha: z.number().gt(0).max(1).default(1),
  })
  .strict();

/** A parsed overlap setting. */
export type TrainOverlap = z.output<typeof trainOverlapSchema>;
