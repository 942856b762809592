/** Where a coordinator's local shards dial it, and what they are called (coordinator/shards/local.ts). */
import { describe, expect, it } from 'vitest';
import { coordinatorConfigSchema } from '../../../coordinator/config.js';
import { localShardNames, loopbackTarget } from '../../../coordinator/shards/local.js';

describe('local aggregator shards', () => {
  it('dial a coordinator bound to every interface on loopback, and one bound to a host at that host', () => {
    expect(loopbackTarget('0.0.0.0:7443')).toBe('127.0.0.1:7443');
    expect(loopbackTarget('[::]:7443')).toBe('[::1]:7443');
    expect(loopbackTarget('10.1.2.3:7443')).toBe('10.1.2.3:7443');
    expect(loopbackTarget('[fd00::5]:7443')).toBe('[fd00::5]:7443');
  });

  it('are named local-1 … local-K in shard order', () => {
    expect(localShardNames(3)).toEqual(['local-1', 'local-2', 'local-3']);
    expect(localShardNames(0)).toEqual([]);
  });

  it('are refused beside configured aggregators, and beyond 64', () => {
    const base = { federation: 'f', listen: '127.0.0.1:1', tls: { ca: 'a', cert: 'b', key: 'c' }, stateDir: 's', model: { initial: 'm' } };
    expect(coordinatorConfigSchema.parse({ ...base, localShards: 2 }).localShards).toBe(2);
    expect(coordinatorConfigSchema.parse(base).localShards).toBe(0);
    const both = coordinatorConfigSchema.safeParse({ ...base, localShards: 2, aggregators: [{ name: 's1', endpoint: 'h:1' }] });
    expect(both.success).toBe(false);
    expect(both.error?.issues[0]).toMatchObject({ path: ['localShards'], message: expect.stringContaining('not both') });
    expect(coordinatorConfigSchema.safeParse({ ...base, localShards: 65 }).success).toBe(false);
  });
});
