/**
 * The site config names its coordinator once: one address (`coordinator`) or several in order
 * (`coordinators`, for a standby coordinator's `NOT_LEADER` to point past), read as one list; the
 * refusals are the rule it shares with the admin config (test/unit/common/coordinator-addresses.test.ts).
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

  it('treats a config built in code with both as a bug', () => {
    const c = siteConfigSchema.parse({ ...base, coordinator: 'a:1' });
    expect(() => coordinatorAddresses({ ...c, coordinators: ['b:2'] })).toThrow(/names its coordinator once/);
  });
});
