/**
 * The one rule site and admin configs share (common/coordinator-verdict.ts `exactlyOneCoordinator`,
 * `coordinatorAddressSchema`): a config names its coordinator once, one address (`coordinator`) or
 * several in order (`coordinators`: a leader and its standbys); both, neither, an empty list or an
 * address without a port is an error naming the field and saying what to write.
 */
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { adminConfigSchema } from '../../../cli/admin.js';
import { siteConfigSchema } from '../../../site-agent/config.js';

const tls = { ca: 'ca', cert: 'c', key: 'k' };
const CONFIGS: readonly { readonly name: string; readonly schema: z.ZodTypeAny; readonly base: Record<string, unknown> }[] = [
  { name: 'site', schema: siteConfigSchema, base: { site: 'site-1', tls, workDir: 'work', runner: { kind: 'builtin', language: 'en' } } },
  { name: 'admin', schema: adminConfigSchema, base: { tls } },
];

describe.each(CONFIGS)('$name config: coordinator addresses', ({ schema, base }) => {
  it('takes one address as coordinator, or a list as coordinators', () => {
    expect(schema.parse({ ...base, coordinator: 'c.example.org:7443' })).toMatchObject({ coordinator: 'c.example.org:7443' });
    expect(schema.parse({ ...base, coordinators: ['a.example.org:7443', '[::1]:7444'] })).toMatchObject({ coordinators: ['a.example.org:7443', '[::1]:7444'] });
  });

  it('refuses both, neither, an empty list and an address without a port, naming the field', () => {
    const issues = (c: Record<string, unknown>): { path: string; message: string }[] => {
      const r = schema.safeParse({ ...base, ...c });
      expect(r.success).toBe(false);
      return r.success ? [] : r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    };
    expect(issues({ coordinator: 'a:1', coordinators: ['b:2'] })).toEqual([{ path: 'coordinators', message: 'give either "coordinator" or "coordinators", not both' }]);
    expect(issues({})).toEqual([{ path: 'coordinator', message: expect.stringContaining('"coordinators": ["host:port", ...]') as string }]);
    expect(issues({ coordinators: [] }).map((i) => i.path)).toContain('coordinators');
    expect(issues({ coordinators: ['a.example.org'] })).toEqual([{ path: 'coordinators.0', message: 'host:port' }]);
  });
});
