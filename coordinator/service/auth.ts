/**
 * Who is calling: the identity comes from the mTLS client certificate (never from a message
 * field), checked for the role the service needs and, for sites, against the revocations.
 */
import { identityFromAuthContext, type AuthContextLike, type IdentityResolver, type PeerIdentity, type Role } from '../pki/index.js';
import { CoordinatorError } from '../core/errors.js';

/** A resolver that can also refuse an identity (revoked sites); see coordinator/sites/revocation.ts. */
type MaybeAccessResolver = IdentityResolver & { refusal?: (identity: PeerIdentity, peer?: string) => string | undefined };

/**
 * Reads the caller's identity and requires `role`; throws UNAUTHENTICATED, PERMISSION_DENIED, or
 * SITE_REVOKED (also PERMISSION_DENIED on the wire) for a revoked site certificate.
 */
export function authenticate(
  call: { getAuthContext(): AuthContextLike; getPeer?(): string },
  resolver: MaybeAccessResolver,
  role: Role,
): PeerIdentity {
  const result = identityFromAuthContext(call.getAuthContext(), (raw) => resolver.resolve(raw));
  if (!result.ok) {
    throw new CoordinatorError('UNAUTHENTICATED', result.issues.map((i) => i.message).join('; '));
  }
  const refusal = resolver.refusal?.(result.value, call.getPeer?.());
  if (refusal !== undefined) throw new CoordinatorError('SITE_REVOKED', refusal, { site: result.value.id });
  if (result.value.role !== role) {
    const article = /^[aeiou]/.test(result.value.role) ? 'an' : 'a';
    throw new CoordinatorError('PERMISSION_DENIED', `${article} ${result.value.role} certificate cannot call the ${role} API`, {
      role: result.value.role,
    });
  }
  return result.value;
}
