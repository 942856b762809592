/**
 * Character bigram baseline: the bar the federated model must beat. Counts come only from the
 * training sets; held-out text is never used for fitting.
 */
import { PAD_TOKEN } from './corpus.js';
import { BuiltinErrorCode, BuiltinTrainerError } from './errors.js';

/**
 * Fits an add-`alpha` smoothed character bigram on the union of `trainSets` and returns its mean
 * cross-entropy (nats per char) on the union of `heldout`. Like the MLP, each text is taken to be
 * preceded by '\n', so both models predict exactly the same positions.
 */
export function bigramEvalLoss(trainSets: readonly Uint8Array[], heldout: readonly Uint8Array[], vocabSize: number, alpha = 0.1): number {
  if (!Number.isSafeInteger(vocabSize) || vocabSize < 1) {
    throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, `vocabSize must be a positive integer, got ${vocabSize}`, { vocabSize });
  }
  if (!(alpha > 0)) throw new BuiltinTrainerError(BuiltinErrorCode.InvalidArgument, `alpha must be positive, got ${alpha}`, { alpha });
  const V = vocabSize;
  const counts = new Float64Array(V * V);
  const rowTotals = new Float64Array(V);
  const check = (tok: number, offset: number): void => {
    if (tok >= V) throw new BuiltinTrainerError(BuiltinErrorCode.TokenOutOfRange, `token ${tok} at offset ${offset} is outside the vocabulary of ${V}`, { token: tok, offset });
  };
  for (const data of trainSets) {
    let prev = PAD_TOKEN;
    for (let i = 0; i < data.length; i++) {
      const tok = data[i]!;
      check(tok, i);
      counts[prev * V + tok]! += 1;
      rowTotals[prev]! += 1;
      prev = tok;
    }
  }
  let total = 0;
  let n = 0;
  for (const data of heldout) {
    let prev = PAD_TOKEN;
    for (let i = 0; i < data.length; i++) {
      const tok = data[i]!;
      check(tok, i);
      total -= Math.log((counts[prev * V + tok]! + alpha) / (rowTotals[prev]! + alpha * V));
      n++;
      prev = tok;
    }
  }
  if (n === 0) throw new BuiltinTrainerError(BuiltinErrorCode.DatasetTooShort, 'held-out sets are empty; nothing to evaluate', { length: 0, required: 1 });
  return total / n;
}
