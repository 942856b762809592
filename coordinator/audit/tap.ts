/** Noticing journal appends without changing the state store (the NATS publisher's trigger). */
import type { StateStore } from '../state/store.js';
import type { JournalRecord } from '../state/journal.js';

/**
 * Returns `store` with `append` wrapped: once a record is durable, `onAppended` hears of it.
 * Everything else is the store's own (a Proxy, so methods other parts add later pass through).
 */
export function tapAppends<S extends StateStore>(store: S, onAppended: (record: JournalRecord) => void): S {
  const append: StateStore['append'] = async (body) => {
    const record = await store.append(body);
    onAppended(record);
    return record;
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'append') return append;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
