/**
 * A hand-built gRPC service over raw Buffers, for tests where the TLS handshake, not protobuf, is
 * under test: `WhoAmI` answers with whatever the handler returns.
 */
import * as grpc from '@grpc/grpc-js';

// Dial the IP but check the certificate as `localhost`: giving TLS an IP as its SNI name trips Node's DEP0123 warning.
export const CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };

export const echoService = {
  whoAmI: {
    path: '/fedhpc.test.Echo/WhoAmI',
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Buffer) => value,
    requestDeserialize: (value: Buffer) => value,
    responseSerialize: (value: Buffer) => value,
    responseDeserialize: (value: Buffer) => value,
  },
} satisfies grpc.ServiceDefinition;

/** The client constructor of {@link echoService}. */
export const EchoClient = grpc.makeGenericClientConstructor(echoService, 'Echo');
