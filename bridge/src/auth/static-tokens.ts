/**
 * @module
 * Static bearer tokens (`auth.mode: bearer`). The catalog stores only the SHA-256 of each token,
 * so a leaked catalog (a ConfigMap, a repository) gives nobody access. A presented token is
 * hashed and compared with every stored hash in constant time.
 */
import type { StaticTokenSettings } from '@ferry/shared'
import { decodeBase64url, encodeBase64url } from '../session/keyring.ts'
import { constantTimeEqual } from './principal.ts'

const utf8 = new TextEncoder()

/**
 * The value for a static token's `sha256` field: unpadded base64url of the SHA-256 of the
 * token's UTF-8 bytes (43 characters). Backs a CLI such as `ferry auth hash-token`.
 */
export async function hashToken(token: string): Promise<string> {
  if (token.length === 0) throw new RangeError('the token must not be empty')
  const digest = await globalThis.crypto.subtle.digest('SHA-256', utf8.encode(token))
  return encodeBase64url(new Uint8Array(digest))
}

/**
 * A fresh random static token: `ferry_` + 43 base64url characters (256 random bits). The prefix
 * lets secret scanners recognise a leaked one. Store only {@link hashToken} of it.
 */
export function generateToken(): string {
  return `ferry_${encodeBase64url(globalThis.crypto.getRandomValues(new Uint8Array(32)))}`
}

/** The configured static tokens, ready to check presented ones against. */
export class StaticTokens {
  readonly #entries: readonly { hash: Uint8Array; token: StaticTokenSettings }[]

  constructor(tokens: readonly StaticTokenSettings[]) {
    this.#entries = tokens.map((token) => {
      const hash = decodeBase64url(token.sha256)
      if (hash?.length !== 32) throw new RangeError('a static token hash is not 32 bytes')
      return { hash, token }
    })
  }

  /**
   * The entry whose hash matches `token`, or `undefined`. Every entry is compared, matched or
   * not, so the time taken does not tell which entry (or whether any) matched.
   */
  async find(token: string): Promise<StaticTokenSettings | undefined> {
    const digest = new Uint8Array(
      await globalThis.crypto.subtle.digest('SHA-256', utf8.encode(token))
    )
    let found: StaticTokenSettings | undefined
    for (const entry of this.#entries) {
      if (constantTimeEqual(entry.hash, digest)) found ??= entry.token
    }
    return found
  }
}
