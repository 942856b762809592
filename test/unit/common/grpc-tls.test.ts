import { describe, expect, it } from 'vitest';
import { targetHost } from '../../../common/grpc-tls.js';

describe('targetHost: the name a coordinator certificate must carry for a gRPC target', () => {
  it('takes the host of host:port, [v6]:port and scheme-prefixed targets', () => {
    expect(targetHost('fl.example.org:7443')).toBe('fl.example.org');
    expect(targetHost('127.0.0.1:7443')).toBe('127.0.0.1');
    expect(targetHost('[::1]:7443')).toBe('::1');
    expect(targetHost('[2001:db8::7]:7443')).toBe('2001:db8::7');
    expect(targetHost('dns:///fl.example.org:7443')).toBe('fl.example.org');
    expect(targetHost('dns:fl.example.org:7443')).toBe('fl.example.org');
    expect(targetHost('ipv4:10.0.0.5:7443')).toBe('10.0.0.5');
    expect(targetHost('localhost')).toBe('localhost');
    expect(targetHost('2001:db8::7')).toBe('2001:db8::7');
  });
});
