/**
 * Who is calling: the identity comes from the mTLS client certificate (never from a message
 * field), checked for the role the service needs.
 */
import { identityFromAuthContext, type AuthContextLike, type IdentityResolver, type PeerIdentity, type Role } from '../pki/index.js';
import { CoordinatorError } from '../errors.js';

/** Reads the caller's identity and requires `role`; throws UNAUTHENTICATED / PERMISSION_DENIED. */
export function authenticate(
  call: { getAuthContext(): AuthContextLike },
  resolver: IdentityResolver,
  role: Role,
): PeerIdentity {
  const result = identityFromAuthContext(call.getAuthContext(), (raw) => resolver.resolve(raw));
  if (!result.ok) {
    throw new CoordinatorError('UNAUTHENTICATED', result.issues.map((i) => i.message).join('; '));
  }
  if (result.value.role !== role) {
    const article = /^[aeiou]/.test(result.value.role) ? 'an' : 'a';
    throw new CoordinatorError('PERMISSION_DENIED', `${article} ${result.value.role} certificate cannot call the ${role} API`, {
      role: result.value.role,
    });
  }
  return result.value;
}
