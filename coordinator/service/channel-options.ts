/**
 * The gRPC server options of every coordinator listener — the leader's and a standby's
 * (coordinator/ha/standby-server.ts) — in a module of their own, so that both import them without
 * a cycle (coordinator.ts is what starts a standby).
 */
import type * as grpc from '@grpc/grpc-js';
import { DEFAULT_FLOW_CONTROL_WINDOW_BYTES, FLOW_CONTROL_WINDOW_OPTION } from '../../common/grpc-window.js';
import { MAX_MESSAGE_BYTES } from '../../proto/index.js';

/** gRPC server options: large messages for 4 MiB chunks, keepalive to notice dead agents. */
export const SERVER_CHANNEL_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  // 20 s (gRPC's default), not less: a PING answer queues behind up to a window of upload
  // data (common/grpc-window.ts), and a short timeout dropped busy uploads under load.
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  // A 64 MiB receive window per connection: grpc-js servers keep 64 KiB (one window per round trip,
  // about 2 MB/s at 30 ms) unless common/grpc-window.ts makes them honour this client option.
  [FLOW_CONTROL_WINDOW_OPTION]: DEFAULT_FLOW_CONTROL_WINDOW_BYTES,
};
