/**
 * `fedhpc provision --coordinators`: each entry is host:port or name=host:port; a name is made from
 * the host when none is given; what the PKI would refuse, or a name or address given twice, is a
 * usage error naming the entry.
 */
import { describe, expect, it } from 'vitest';
import { parseCoordinators } from '../../../cli/provision-coordinators.js';
import { UsageError } from '../../../cli/usage-error.js';

describe('parseCoordinators', () => {
  it('names each coordinator from its host, or as given, and binds every interface on its port', () => {
    expect(parseCoordinators('coord-a.example.org:7443,standby=10.0.0.6:7444,[::1]:7445')).toEqual([
      { name: 'coord-a-example-org', address: 'coord-a.example.org:7443', listen: '0.0.0.0:7443' },
      { name: 'standby', address: '10.0.0.6:7444', listen: '0.0.0.0:7444' },
      { name: '1', address: '[::1]:7445', listen: '0.0.0.0:7445' },
    ]);
    expect(parseCoordinators('localhost:1,127.0.0.1:2').map((c) => c.name)).toEqual(['localhost', '127-0-0-1']);
  });

  it('refuses an empty list, an entry without a port, a bad name, and duplicates, naming the entry', () => {
    const refusal = (text: string): string => {
      try {
        parseCoordinators(text);
      } catch (err) {
        expect(err).toBeInstanceOf(UsageError);
        return (err as Error).message;
      }
      return expect.fail(`${text} was taken`);
    };
    expect(refusal(',')).toContain('at least one');
    expect(refusal('a.example.org')).toContain('"a.example.org" is not host:port');
    expect(refusal('Big_Name=a.example.org:1')).toContain('the name "Big_Name"');
    expect(refusal('a.example.org:1,a.example.org:2')).toContain('two coordinators are named a-example-org');
    expect(refusal('x=a:1,y=a:1')).toContain('a:1 is listed twice');
  });
});
