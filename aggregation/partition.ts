/**
 * How a model is cut over K aggregator shards (issue 22; docs/decisions.md, 2026-12-05 "Issue 22,
 * first step"). Pure and deterministic: the same tensor list, K and options give the same
 * partition, so the coordinator can journal it in the run's plan and anyone can recompute it.
 *
 * **The rule: contiguous ranges, nearest aligned cut.** Lay the model's values out flat in the
 * order of `tensors` (the global model's data order, which is the wire order of a delta), N values
 * in all. A *cut* may fall at the start or end of a tensor, or inside a tensor t between rows, at a
 * value offset that is a multiple of its *unit* u_t = lcm(rowValues_t, A) values (A =
 * `alignValues`, {@link PARTITION_ALIGN_VALUES} by default); a tensor shorter than its unit is one
 * unit. Shard s (0 ≤ s < K) owns the flat range [b_s, b_{s+1}) where b_0 = 0, b_K = N and, for
 * 0 < s < K, b_s is the cut nearest the ideal boundary τ_s = s·N/K (the lower one on a tie; the
 * comparison is exact, in integers scaled by K). Each shard therefore owns one contiguous run of
 * tensors, the first and last possibly in part; the parts of one tensor are consecutive row
 * ranges in shard order.
 *
 * **The bound.** Let U be the largest unit of the model (`maxUnitValues`). τ_s lies in some unit
 * [c, c'] whose ends are both cuts and which holds no cut inside, so the nearest cut is c or c' and
 * |b_s − τ_s| ≤ (c' − c)/2 ≤ U/2; b_0 and b_K are exact. Shard s holds L_s = b_{s+1} − b_s values,
 * so |L_s − N/K| ≤ |b_{s+1} − τ_{s+1}| + |b_s − τ_s| ≤ U (U/2 for the first and last shard, hence
 * for every shard when K = 2; 0 when K = 1). The nearest-cut choice is monotone in τ, so the b_s
 * never cross. With A = 1 a unit is one row (one element of a 1-D tensor): the bound is one row's
 * values per shard, half a row per boundary. For Salamandra-2B and A = 128, U = 10,880 values (a
 * `down_proj` unit of two 5,440-value rows) against N/K ≥ 2.8·10⁸ at K ≤ 8.
 *
 * **Balanced by values, not by one encoding's bytes.** The partition is one per run while the
 * encoding is per upload, and the shard's work (accumulating, the server optimizer, the
 * checkpoint) is per value. Bytes follow values: ×4 in f32 and secagg32, ×2 in bf16 and secagg16,
 * exactly; in int8 a part of v values is v + 4·⌈v/128⌉ bytes, so a shard's bytes are 33/32 of its
 * values plus under 4 bytes for each tensor whose last block is short and ends in that shard
 * (none in Salamandra). The masked weight word of a secure upload belongs to no part.
 *
 * **Why A = 128 by default.** An int8 tensor is encoded in blocks of {@link INT8_BLOCK} values,
 * each with the scale of its own values, counted from the tensor's start. A cut at a multiple of
 * 128 values makes every part start on a block and end on a block or at the tensor's end, so a
 * part's encoded bytes are exactly the bytes of encoding its values on their own, and they are
 * one contiguous slice of today's whole-delta layout owned by no other shard
 * ({@link shardByteRanges}). A cut inside a block would give the two shards one shared scale: the
 * slice could not be cut by shard, nor encoded by a site from one part's values. The cost is a
 * coarser cut (U = 10,880 instead of 5,440 values for Salamandra), which the bound absorbs.
 *
 * **Refusals** (results, not throws: K comes from a run's configuration). K not an integer ≥ 1
 * and a bad `alignValues` (`OPTIONS_INVALID`); a tensor without a name, a repeated name or a shape
 * that is not a list of non-negative safe integers (`INVALID_ARGUMENT`); K above the model's number
 * of units, which is at most its number of rows (`OUT_OF_RANGE`), or a K at which two boundaries
 * meet on one cut so that a shard would own nothing (`OUT_OF_RANGE`). The bound makes the last
 * possible only when K·U ≥ N: every K < N/U is accepted (K ≤ 207,122 for Salamandra-2B).
 * A tensor of zero values is a part of the shard whose range holds its flat offset (the last shard
 * at the end), so every tensor has an owner.
 */
import { AggregationError, type AggregationErrorCode } from './errors.js';
import { invariant } from './invariant.js';
import { INT8_BLOCK } from './kernels/encoding.js';
import { type Result, err, ok, unwrap } from './result.js';
import { type DeltaEncoding, type Segment, deltaSegments, encodedTensorBytes } from './wire-layout.js';

/** The default `alignValues`: one int8 block, so every part encodes on its own in every encoding. */
export const PARTITION_ALIGN_VALUES = INT8_BLOCK;

/** Options of {@link partitionModel}. */
export interface PartitionOptions {
  /**
   * A cut inside a tensor falls between rows, at a value offset that is a multiple of this
   * (default {@link PARTITION_ALIGN_VALUES}). 1 cuts at any row, which int8 cannot slice by shard.
   */
  readonly alignValues?: number;
}

/** {@link PartitionOptions} checked and defaulted. */
export interface ResolvedPartitionOptions {
  readonly alignValues: number;
}

/** One tensor as the partition sees it. */
export interface PartitionTensor {
  readonly name: string;
  /** Rows along dimension 0; the elements of a 1-D tensor; 1 for a scalar. */
  readonly rows: number;
  /** Values in one row: the product of the other dimensions (1 for 1-D tensors and scalars). */
  readonly rowValues: number;
  readonly values: number;
  /** Values between two cuts inside the tensor: lcm(rowValues, alignValues), at most `values`. */
  readonly unitValues: number;
}

/** A contiguous range of one tensor's rows owned by one shard. */
export interface PartitionPart {
  /** Index of the tensor in the model's order. */
  readonly tensor: number;
  readonly name: string;
  readonly firstRow: number;
  readonly rows: number;
}

/** A model cut over K shards; plain data (JSON-serialisable) for the run's plan. */
export interface ModelPartition {
  readonly alignValues: number;
  /** The model's tensors in its order. */
  readonly tensors: readonly PartitionTensor[];
  /** For each shard, its parts in the model's order. */
  readonly shards: readonly (readonly PartitionPart[])[];
  /** K + 1 flat value offsets: shard s owns values [bounds[s], bounds[s + 1]). */
  readonly bounds: readonly number[];
  readonly totalValues: number;
  /** U, the largest unit: every shard holds N/K ± U values (± U/2 for the first and last). */
  readonly maxUnitValues: number;
}

/** Checks and defaults {@link PartitionOptions}. */
export function resolvePartitionOptions(options: PartitionOptions = {}): Result<ResolvedPartitionOptions, AggregationErrorCode> {
  const alignValues = options.alignValues ?? PARTITION_ALIGN_VALUES;
  if (!Number.isSafeInteger(alignValues) || alignValues < 1) {
    return err('OPTIONS_INVALID', `alignValues: expected an integer ≥ 1, got ${String(alignValues)}`, { alignValues });
  }
  return ok({ alignValues });
}

/**
 * Cuts `tensors` (the global model's tensors in its data order) over `shards` aggregator shards by
 * the rule of this module's header: each shard owns one contiguous range of the flat model,
 * N/K ± U values, its parts whole rows, aligned to `alignValues` inside a tensor.
 */
export function partitionModel(
  tensors: readonly { readonly name: string; readonly shape: readonly number[] }[],
  shards: number,
  options: PartitionOptions = {},
): Result<ModelPartition, AggregationErrorCode> {
  const resolved = resolvePartitionOptions(options);
  if (!resolved.ok) return resolved;
  const { alignValues } = resolved.value;
  if (!Number.isSafeInteger(shards) || shards < 1) return err('OPTIONS_INVALID', `shards: expected an integer ≥ 1, got ${String(shards)}`, { shards });
  const described = describeTensors(tensors, alignValues);
  if (!described.ok) return described;
  const { list, totalValues, totalRows, units, maxUnitValues } = described.value;
  if (shards > units) {
    return err(
      'OUT_OF_RANGE',
      `${shards} shards but the model cuts into only ${units} units (${totalRows} rows; inside a tensor a cut falls between rows, on a multiple of ${alignValues} values)`,
      { shards, units, rows: totalRows, alignValues },
    );
  }
  const bounds = nearestCuts(list, totalValues, shards);
  const empty = bounds.findIndex((b, s) => s < shards && bounds[s + 1] === b);
  if (empty >= 0) {
    return err(
      'OUT_OF_RANGE',
      `shard ${empty} of ${shards} would own nothing: the model's largest unit (${maxUnitValues} values) is too large against its ${totalValues} values over ${shards} shards (every K ≤ ${Math.ceil(totalValues / maxUnitValues) - 1} is accepted)`,
      { shards, shard: empty, maxUnitValues, totalValues },
    );
  }
  return ok({ alignValues, tensors: list, shards: cutParts(list, bounds), bounds, totalValues, maxUnitValues });
}

interface Described {
  readonly list: PartitionTensor[];
  readonly totalValues: number;
  readonly totalRows: number;
  readonly units: number;
  readonly maxUnitValues: number;
}

function describeTensors(tensors: readonly { readonly name: string; readonly shape: readonly number[] }[], alignValues: number): Result<Described, AggregationErrorCode> {
  const names = new Set<string>();
  const list: PartitionTensor[] = [];
  let totalValues = 0;
  let totalRows = 0;
  let units = 0;
  let maxUnitValues = 0;
  for (const [index, { name, shape }] of tensors.entries()) {
    if (typeof name !== 'string' || name.length === 0) return err('INVALID_ARGUMENT', `tensor ${index} has no name`, { index });
    if (names.has(name)) return err('INVALID_ARGUMENT', `tensor ${JSON.stringify(name)} is repeated`, { tensor: name, index });
    names.add(name);
    const dims = Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0) ? shape : undefined;
    const rows = dims === undefined ? undefined : dims.length === 0 ? 1 : dims[0];
    const rowValues = dims === undefined ? undefined : safeProduct(dims.slice(1));
    const values = rows === undefined || rowValues === undefined ? undefined : safeProduct([rows, rowValues]);
    if (rows === undefined || rowValues === undefined || values === undefined || !Number.isSafeInteger(totalValues + values)) {
      return err('INVALID_ARGUMENT', `tensor ${JSON.stringify(name)} has an invalid shape ${JSON.stringify(shape)}`, { tensor: name, index, shape });
    }
    const unitValues = values === 0 ? 0 : unitOf(rowValues, alignValues, values);
    list.push({ name, rows, rowValues, values, unitValues });
    totalValues += values;
    totalRows += rows;
    units += unitValues === 0 ? 0 : Math.ceil(values / unitValues);
    maxUnitValues = Math.max(maxUnitValues, unitValues);
  }
  return ok({ list, totalValues, totalRows, units, maxUnitValues });
}

/** Product of `xs`, or undefined past the safe integers. */
function safeProduct(xs: readonly number[]): number | undefined {
  let p = 1;
  for (const x of xs) {
    p *= x;
    if (!Number.isSafeInteger(p)) return undefined;
  }
  return p;
}

/** lcm(rowValues, align) capped at the tensor's values (a tensor shorter than its unit is one). */
function unitOf(rowValues: number, align: number, values: number): number {
  let a = rowValues;
  let b = align;
  while (b !== 0) [a, b] = [b, a % b];
  const lcm = rowValues * (align / a);
  return Number.isSafeInteger(lcm) && lcm < values ? lcm : values;
}

/** b_0 … b_K: for 0 < s < K the cut nearest s·N/K, ties to the lower, compared exactly (×K, BigInt). */
function nearestCuts(list: readonly PartitionTensor[], totalValues: number, shards: number): number[] {
  const k = BigInt(shards);
  const bounds = [0];
  let t = 0;
  let start = 0; // flat offset of tensor t
  for (let s = 1; s < shards; s++) {
    const target = BigInt(totalValues) * BigInt(s); // τ_s scaled by K
    // Tensors are visited once over all s: targets only grow. Empty tensors are stepped over.
    while (BigInt(start + list[t]!.values) * k <= target) start += list[t++]!.values;
    const tensor = list[t];
    invariant(tensor !== undefined && tensor.unitValues > 0, 'a target below N lies inside a tensor with values');
    const j = Number((target - BigInt(start) * k) / (BigInt(tensor.unitValues) * k));
    const lo = start + j * tensor.unitValues;
    const hi = Math.min(lo + tensor.unitValues, start + tensor.values);
    bounds.push(target - BigInt(lo) * k <= BigInt(hi) * k - target ? lo : hi);
  }
  bounds.push(totalValues);
  return bounds;
}

/** Each shard's parts: the tensors its range [b_s, b_{s+1}) meets, cut to it, in model order. */
function cutParts(list: readonly PartitionTensor[], bounds: readonly number[]): PartitionPart[][] {
  const shards: PartitionPart[][] = bounds.slice(1).map(() => []);
  const last = shards.length - 1;
  let s = 0;
  let start = 0;
  list.forEach((tensor, index) => {
    const end = start + tensor.values;
    // A tensor of no values goes to the shard whose range holds its offset (the last one at N).
    while (s < last && bounds[s + 1]! <= start) s++;
    if (tensor.values === 0) shards[s]!.push({ tensor: index, name: tensor.name, firstRow: 0, rows: tensor.rows });
    for (let at = start; at < end; ) {
      while (bounds[s + 1]! <= at) s++;
      const stop = Math.min(end, bounds[s + 1]!);
      invariant((at - start) % tensor.rowValues === 0 && (stop - start) % tensor.rowValues === 0, 'a cut inside a tensor falls between rows');
      shards[s]!.push({ tensor: index, name: tensor.name, firstRow: (at - start) / tensor.rowValues, rows: (stop - at) / tensor.rowValues });
      at = stop;
    }
    start = end;
  });
  return shards;
}

/** Where one part's values lie in the whole-delta wire layout: bytes [start, end). */
export interface PartByteRange {
  /** Index of the tensor in the model's order. */
  readonly tensor: number;
  readonly start: number;
  readonly end: number;
}

/**
 * The byte ranges of `shard`'s parts in today's whole-delta layout for `encoding`
 * ({@link deltaSegments} of the partition's tensors), in order; they are consecutive, so a shard's
 * bytes are one slice of the delta. The masked weight word of a secure encoding is in no range.
 * Throws `OUT_OF_RANGE` for a shard the partition does not have and `INVALID_ARGUMENT` when an
 * int8 part would share a block with another (a partition cut with `alignValues` not a multiple
 * of {@link INT8_BLOCK}).
 */
export function shardByteRanges(partition: ModelPartition, shard: number, encoding: DeltaEncoding): PartByteRange[] {
  const parts = Number.isSafeInteger(shard) ? partition.shards[shard] : undefined;
  if (parts === undefined) {
    throw new AggregationError('OUT_OF_RANGE', `no shard ${String(shard)} in a partition of ${partition.shards.length}`, { shard, shards: partition.shards.length });
  }
  const segments = deltaSegments(encoding, partition.tensors.map((t) => t.values));
  return parts.map((part) => unwrap(partByteRange(partition, segments, part, encoding), AggregationError, `shard ${shard}`));
}

/**
 * Checks that the shards' byte ranges for `encoding`, in shard order, tile the tensors' bytes of
 * the whole-delta layout exactly: no gap, no overlap, nothing left over. For plain encodings that
 * is [0, total bytes); for secure ones everything before the weight word. Meant for a partition
 * read back from a journal as well as a fresh one; the value is the bytes tiled.
 */
export function checkShardRangesTile(partition: ModelPartition, encoding: DeltaEncoding): Result<{ readonly bytes: number }, AggregationErrorCode> {
  const segments = deltaSegments(encoding, partition.tensors.map((t) => t.values));
  const tensorsEnd = partition.tensors.length === 0 ? 0 : segments[partition.tensors.length - 1]!.end;
  let at = 0;
  for (const [shard, parts] of partition.shards.entries()) {
    for (const part of parts) {
      const range = partByteRange(partition, segments, part, encoding);
      if (!range.ok) return range;
      if (range.value.start !== at) {
        const what = range.value.start < at ? 'overlaps the bytes before it' : 'leaves a gap before it';
        return err('INVALID_ARGUMENT', `shard ${shard}'s part of ${JSON.stringify(part.name)} starts at byte ${range.value.start}, expected ${at}: it ${what}`, { shard, tensor: part.tensor, start: range.value.start, expected: at, encoding });
      }
      at = range.value.end;
    }
  }
  if (at !== tensorsEnd) return err('INVALID_ARGUMENT', `the shards' ranges end at byte ${at}, the tensors at ${tensorsEnd}`, { end: at, expected: tensorsEnd, encoding });
  return ok({ bytes: at });
}

/** Where one tensor's data lies in a model file: its absolute first byte and its bytes per value. */
export interface FileTensor {
  readonly byteOffset: number;
  readonly valueBytes: number;
}

/**
 * The byte range of each shard's part in a model file whose tensors are the partition's, in its
 * order, with their data back to back (as every checkpoint fedhpc writes, whatever each tensor's
 * dtype): shard s serves [start, end) where the first shard's range starts at byte 0 (the
 * header is its) and the last one's ends at `fileSize`. The ranges tile the file, in shard order.
 * Throws `INVALID_ARGUMENT` for tensors that do not match the partition or are not back to back.
 */
export function shardFileRanges(partition: ModelPartition, tensors: readonly FileTensor[], fileSize: number): { readonly start: number; readonly end: number }[] {
  if (tensors.length !== partition.tensors.length) {
    throw new AggregationError('INVALID_ARGUMENT', `the file has ${tensors.length} tensors, the partition ${partition.tensors.length}`, { file: tensors.length, partition: partition.tensors.length });
  }
  const flatStart: number[] = [];
  let flat = 0;
  for (const [i, t] of partition.tensors.entries()) {
    const f = tensors[i]!;
    const next = tensors[i + 1];
    const end = f.byteOffset + t.values * f.valueBytes;
    if (next !== undefined ? next.byteOffset !== end : end !== fileSize) {
      throw new AggregationError('INVALID_ARGUMENT', `tensor ${JSON.stringify(t.name)}'s data ends at byte ${end}, not where the next data starts`, { tensor: i, end });
    }
    flatStart.push(flat);
    flat += t.values;
  }
  // The file offset of flat value v (0 < v < N): in the tensor whose values hold it.
  const at = (v: number): number => {
    let i = flatStart.length - 1;
    while (i > 0 && (flatStart[i]! > v || partition.tensors[i]!.values === 0)) i--;
    return tensors[i]!.byteOffset + (v - flatStart[i]!) * tensors[i]!.valueBytes;
  };
  const k = partition.shards.length;
  return partition.shards.map((_, s) => ({ start: s === 0 ? 0 : at(partition.bounds[s]!), end: s === k - 1 ? fileSize : at(partition.bounds[s + 1]!) }));
}

/** One part's byte range, or why it has none: a part outside its tensor, or an int8 block split. */
function partByteRange(partition: ModelPartition, segments: readonly Segment[], part: PartitionPart, encoding: DeltaEncoding): Result<PartByteRange, AggregationErrorCode> {
  const tensor = partition.tensors[part.tensor];
  const segment = segments[part.tensor];
  if (tensor === undefined || segment === undefined || tensor.name !== part.name) {
    return err('INVALID_ARGUMENT', `part names tensor ${part.tensor} ${JSON.stringify(part.name)}, which the partition does not have`, { tensor: part.tensor, name: part.name });
  }
  const rowsOk = [part.firstRow, part.rows].every((x) => Number.isSafeInteger(x) && x >= 0) && part.firstRow + part.rows <= tensor.rows;
  if (!rowsOk) {
    return err('INVALID_ARGUMENT', `part of ${JSON.stringify(part.name)} has rows [${part.firstRow}, +${part.rows}) outside its ${tensor.rows}`, { tensor: part.tensor, firstRow: part.firstRow, rows: part.rows });
  }
  const first = part.firstRow * tensor.rowValues;
  const stop = first + part.rows * tensor.rowValues;
  const splitsBlock = (v: number): boolean => v % INT8_BLOCK !== 0 && v !== tensor.values;
  if (encoding === 'int8' && (splitsBlock(first) || splitsBlock(stop))) {
    return err('INVALID_ARGUMENT', `part of ${JSON.stringify(part.name)} (values [${first}, ${stop})) splits an int8 block of ${INT8_BLOCK} values: cut with alignValues ${partition.alignValues}`, { tensor: part.tensor, first, stop, alignValues: partition.alignValues });
  }
  // For int8 both ends are on blocks (or the tensor's end), so the prefix's bytes are its offset.
  return ok({ tensor: part.tensor, start: segment.start + encodedTensorBytes(encoding, first), end: segment.start + encodedTensorBytes(encoding, stop) });
}
