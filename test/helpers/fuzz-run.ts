/**
 * Runs fuzz inputs against one RPC with a bounded number of calls in flight, and sorts the
 * outcomes into "answered with a status" and "wrong": a handler that threw (UNKNOWN), an unexpected
 * internal error, or a unary call that was never answered (its deadline passed).
 */
import * as grpc from '@grpc/grpc-js';
import type { RawOutcome, RawRpcClient, RpcInfo } from './raw-rpc.js';

/** A call whose ending shows a bug, with the input to replay it. */
export interface WrongOutcome {
  readonly rpc: string;
  readonly index: number;
  readonly inputHex: string;
  readonly code: string;
  readonly details: string;
}

/** The outcome of a fuzz campaign against one RPC. */
export interface FuzzReport {
  readonly calls: number;
  /** Calls per status name. */
  readonly codes: Record<string, number>;
  readonly wrong: WrongOutcome[];
}

/** What counts as wrong for `rpc`'s outcome `o`; undefined when the call ended acceptably. */
export function judge(rpc: RpcInfo, o: RawOutcome): string | undefined {
  if (o.code === grpc.status.UNKNOWN) return 'a handler threw';
  // INTERNAL from our own error mapping means an input reached code that did not expect it.
  if (o.code === grpc.status.INTERNAL && o.details.startsWith('INTERNAL:')) return 'an unexpected error inside a handler';
  if (!rpc.responseStream && o.code === grpc.status.DEADLINE_EXCEEDED) return 'no answer before the deadline';
  return undefined;
}

/** Sends every input (unary and streams alike) with at most `inFlight` calls open at once. */
export async function fuzzRpc(
  client: RawRpcClient,
  rpc: RpcInfo,
  inputs: readonly Buffer[],
  o: { readonly inFlight: number; readonly deadlineMs: number },
): Promise<FuzzReport> {
  const codes: Record<string, number> = {};
  const wrong: WrongOutcome[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < inputs.length) {
      const index = next++;
      const input = inputs[index]!;
      // Client streams get the input split in two messages, so the stream has a middle and an end.
      const messages = rpc.requestStream ? [input, input.subarray(0, input.length >> 1)] : [input];
      const out = await client.call(rpc, messages, o.deadlineMs);
      const name = grpc.status[out.code] ?? String(out.code);
      codes[name] = (codes[name] ?? 0) + 1;
      const why = judge(rpc, out);
      if (why) wrong.push({ rpc: `${rpc.service}/${rpc.method}`, index, inputHex: input.subarray(0, 256).toString('hex'), code: `${name} (${why})`, details: out.details });
    }
  };
  await Promise.all(Array.from({ length: o.inFlight }, worker));
  return { calls: inputs.length, codes, wrong };
}
