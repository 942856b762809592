/** What `f` throws, or undefined when it returns: for comparing two refusals, or asserting on one's fields. */
export function thrownBy(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return error;
  }
  return undefined;
}
