/**
 * The site config names its coordinator once: one address (`coordinator`) or several in order
 * (`coordinators`, for a standby coordinator's `NOT_LEADER` to point past); both or neither is an
 * error that says what to write.
 */
import { describe, expect, it } from 'vitest';
import { coordinatorAddresses, siteConfigSchema } from '../../../site-agent/config.js';

const base = { site: 'site-1', tls: { ca: 'ca', cert: 'c', key: 'k' }, workDir: 'work', runner: { kind: 'builtin', language: 'en' } };

describe('site config: coordinator addresses', () => {
  it('takes one address as coordinator, or a list of one or more as coordinators', () => {
    expect(coordinatorAddresses(siteConfigSchema.parse({ ...base, coordinator: 'c.example.org:7443' }))).toEqual(['c.example.org:7443']);
    expect(coordinatorAddresses(siteConfigSchema.parse({ ...base, coordinators: ['a.example.org:7443', '[::1]:7444'] }))).toEqual(['a.example.org:7443', '[::1]:7444']);
    expect(coordinatorAddresses(siteConfigSchema.parse({ ...base, coordinators: ['a.example.org:7443'] }))).toEqual(['a.example.org:7443']);
  });

  it('refuses both, neither, an empty list, and an address without a port, naming the field', () => {
    const issues = (c: Record<string, unknown>): { path: string; message: string }[] => {
      const r = siteConfigSchema.safeParse({ ...base, ...c });
      expect(r.success).toBe(false);
      return r.success ? [] : r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    };
    expect(issues({ coordinator: 'a:1', coordinators: ['b:2'] })).toEqual([{ path: 'coordinators', message: 'give either "coordinator" or "coordinators", not both' }]);
    expect(issues({})).toEqual([{ path: 'coordinator', message: expect.stringContaining('"coordinators": ["host:port", ...]') as string }]);
    expect(issues({ coordinators: [] }).map((i) => i.path)).toContain('coordinators');
    expect(issues({ coordinators: ['a.example.org'] })).toEqual([{ path: 'coordinators.0', message: 'host:port' }]);
  });

  it('treats a config built in code with both as a bug', () => {
    const c = siteConfigSchema.parse({ ...base, coordinator: 'a:1' });
    expect(() => coordinatorAddresses({ ...c, coordinators: ['b:2'] })).toThrow(/names its coordinator once/);
  });
});
