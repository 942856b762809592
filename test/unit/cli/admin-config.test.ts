/**
 * The admin config names its coordinator once, as the site config does: one address
 * (`coordinator`) or several in order (`coordinators`, a leader and its standbys); both or neither
 * is an error naming the field.
 */
import { describe, expect, it } from 'vitest';
import { adminConfigSchema } from '../../../cli/admin.js';

const base = { tls: { ca: 'ca', cert: 'c', key: 'k' } };

describe('admin config: coordinator addresses', () => {
  it('takes one address as coordinator, or a list as coordinators', () => {
    expect(adminConfigSchema.parse({ ...base, coordinator: 'c.example.org:7443' })).toMatchObject({ coordinator: 'c.example.org:7443' });
    expect(adminConfigSchema.parse({ ...base, coordinators: ['a.example.org:7443', '[::1]:7444'] })).toMatchObject({ coordinators: ['a.example.org:7443', '[::1]:7444'] });
  });

  it('refuses both, neither, an empty list and an address without a port, naming the field', () => {
    const issues = (c: Record<string, unknown>): { path: string; message: string }[] => {
      const r = adminConfigSchema.safeParse({ ...base, ...c });
      expect(r.success).toBe(false);
      return r.success ? [] : r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    };
    expect(issues({ coordinator: 'a:1', coordinators: ['b:2'] })).toEqual([{ path: 'coordinators', message: 'give either "coordinator" or "coordinators", not both' }]);
    expect(issues({})).toEqual([{ path: 'coordinator', message: expect.stringContaining('"coordinators": ["host:port", ...]') as string }]);
    expect(issues({ coordinators: [] }).map((i) => i.path)).toContain('coordinators');
    expect(issues({ coordinators: ['a.example.org'] })).toEqual([{ path: 'coordinators.0', message: 'host:port' }]);
  });
});
