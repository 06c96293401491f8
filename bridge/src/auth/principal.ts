/**
 * @module
 * Principals (who made a request) and how a session is bound to the one that started it.
 *
 * A session token carries `sub`, a hash of the principal that started the session, never the
 * principal itself; every later request of the session must come from the same principal
 * ({@link sameOwner}), so a leaked `Mcp-Session-Id` alone is useless to another user.
 * Web Crypto only, like the session modules.
 */
import { encodeBase64url } from '../session/keyring.ts'
import type { Keyring } from '../session/keyring.ts'

/** Who made a request, as established by an {@link Authenticator}. */
export interface Principal {
  /** The static token's `principal`, the JWT's principal claim, or `anonymous`. */
  id: string
  /** Scopes the credential grants (empty for anonymous). */
  scopes: string[]
  /** How the principal was established. */
  method: 'bearer' | 'jwt' | 'anonymous'
}

/** The principal of every request when authentication is off (`mode: none`). */
export const anonymousPrincipal = (): Principal => ({
  id: 'anonymous',
  scopes: [],
  method: 'anonymous',
})

const utf8 = new TextEncoder()
const subtle = () => globalThis.crypto.subtle

// Domain separation: the keyring's HMAC key also derives sidecar secrets from session names
// (RFC 1123 labels), which can never contain a NUL, so no input here collides with one there.
const OWNER_DOMAIN = 'ferry principal v1\0'
const KEY_DOMAIN = 'ferry principal key v1\0'

const ownerInput = (principal: Principal): Uint8Array<ArrayBuffer> =>
  utf8.encode(`${OWNER_DOMAIN}${principal.method}:${principal.id}`)

const sha256 = async (data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> =>
  new Uint8Array(await subtle().digest('SHA-256', data))

/** Compares two byte strings in time that depends only on their lengths. */
export const constantTimeEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}

/**
 * The value to store in a session token's `sub` claim for `principal`: `method:id` hashed, so
 * the principal itself is not in the token (and hence not in logs of session ids).
 *
 * With a keyring: `h1.<kid>.<base64url HMAC-SHA256>` under the keyring's primary HMAC key, so
 * the hash cannot be brute-forced from guessable ids (e-mail addresses) without the keyring.
 * Without one: `s1.<base64url SHA-256>`. At most 63 characters either way.
 */
export async function principalHash(principal: Principal, keyring?: Keyring): Promise<string> {
  const input = ownerInput(principal)
  if (keyring) {
    const kid = keyring.primaryId
    const mac = await subtle().sign('HMAC', keyring.hmacKey(kid)!, input)
    return `h1.${kid}.${encodeBase64url(new Uint8Array(mac))}`
  }
  return `s1.${encodeBase64url(await sha256(input))}`
}

/**
 * Whether `principal` owns a session whose token says `sub`. A session without `sub` was
 * started unauthenticated and belongs only to the anonymous principal: turning authentication
 * on makes such sessions unusable (404 → the client starts over), never shared. An `h1` hash
 * needs the keyring that made it (any key still in the ring); an unknown format is no match.
 */
export async function sameOwner(
  sub: string | undefined,
  principal: Principal,
  keyring?: Keyring
): Promise<boolean> {
  if (sub === undefined) return principal.method === 'anonymous'
  const parts = sub.split('.')
  if (parts[0] === 's1' && parts.length === 2) {
    const expected = encodeBase64url(await sha256(ownerInput(principal)))
    return constantTimeEqual(utf8.encode(parts[1]!), utf8.encode(expected))
  }
  if (parts[0] === 'h1' && parts.length === 3 && keyring) {
    const key = keyring.hmacKey(parts[1]!)
    if (!key) return false
    const mac = await subtle().sign('HMAC', key, ownerInput(principal))
    return constantTimeEqual(
      utf8.encode(parts[2]!),
      utf8.encode(encodeBase64url(new Uint8Array(mac)))
    )
  }
  return false
}

/**
 * A stable key for per-principal quotas: 32 lowercase hex characters of a SHA-256 of
 * `method:id`. Safe as a Kubernetes label value (e.g. `ferry.dev/principal` on session Jobs,
 * so a cluster-wide count can group by it) and stable across keyring rotation. It is not
 * keyed: whoever can list the Jobs could confirm a guessed principal id, so keep that
 * namespace's read access as narrow as its write access.
 */
export async function principalKey(principal: Principal): Promise<string> {
  const digest = await sha256(utf8.encode(`${KEY_DOMAIN}${principal.method}:${principal.id}`))
  let hex = ''
  for (const byte of digest.subarray(0, 16)) hex += byte.toString(16).padStart(2, '0')
  return hex
}
