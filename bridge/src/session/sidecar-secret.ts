/**
 * @module
 * Per-session sidecar secrets. The bridge hands this secret to the sidecar when it starts the
 * session and presents it on every WebSocket connection; the sidecar compares it in constant
 * time. Deriving it (rather than storing it) keeps the bridge stateless: any replica holding the
 * keyring can recompute it from the session token's key id and session name.
 */
import { encodeBase64url } from './keyring.ts'
import type { Keyring } from './keyring.ts'

const utf8 = new TextEncoder()

/**
 * HMAC-SHA256 of `sessionName` under the key `keyId`'s sidecar-secret key, as base64url
 * (43 characters). Use the key id of the session's token, so the secret survives rotation of the
 * primary key. Throws if `keyId` is not in the keyring.
 */
export async function deriveSidecarSecret(
  keyring: Keyring,
  keyId: string,
  sessionName: string
): Promise<string> {
  const key = keyring.hmacKey(keyId)
  if (key === undefined) throw new Error(`Unknown keyring key id: ${JSON.stringify(keyId)}`)
  const mac = await globalThis.crypto.subtle.sign('HMAC', key, utf8.encode(sessionName))
  return encodeBase64url(new Uint8Array(mac))
}
