/**
 * The HTTP/2 receive windows a server grants a client, read by a plain Node HTTP/2 client over mTLS
 * (common/grpc-window.ts: fedhpc's servers open 64 MiB where grpc-js as it ships keeps 64 KiB).
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import type { TlsFiles } from '../../common/tls.js';

export interface PeerWindow {
  /** SETTINGS_INITIAL_WINDOW_SIZE the server advertised: each stream's receive window. */
  readonly streamWindow: number | undefined;
  /** Bytes the client may send on the connection before the server's next WINDOW_UPDATE. */
  readonly connectionWindow: number;
}

/** Connects a plain HTTP/2 client over mTLS and reads the windows the server granted it. */
export async function windowsGrantedBy(port: number, tls: TlsFiles): Promise<PeerWindow> {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    ca: readFileSync(tls.ca),
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    servername: 'localhost',
  });
  try {
    await once(session, 'remoteSettings');
    // Frames arrive in order: once our PING is acknowledged, the server's start-up WINDOW_UPDATE is in.
    await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
    return { streamWindow: session.remoteSettings.initialWindowSize, connectionWindow: session.state.remoteWindowSize ?? -1 };
  } finally {
    session.destroy();
  }
}
