/**
 * @module
 * Session tokens: the `Mcp-Session-Id` that carries everything the stateless bridge needs to
 * route a request, sealed with AES-256-GCM so clients can neither read nor forge it.
 *
 * Format: `<kid>.<base64url(12-byte IV ‖ ciphertext ‖ 16-byte tag)>`, visible ASCII only. The
 * kid selects the key and is also the GCM additional data, so relabelling a token fails.
 * Random 96-bit IVs keep a key safe for about 2^32 tokens (NIST SP 800-38D) — rotate well before.
 */
import { z } from 'zod'
import { decodeBase64url, encodeBase64url } from './keyring.ts'
import type { Keyring } from './keyring.ts'

/** The claims inside a session token. */
export interface SessionClaims {
  v: 1
  /** Session name, also the workload name, e.g. `ferry-q3k9x2m7q4pzt5ba`. */
  sid: string
  /** Catalog server name. */
  srv: string
  /** Runtime kind (`local`, `kubernetes`, …). */
  rt: string
  /** Sidecar address, e.g. `ws://127.0.0.1:41234`. */
  addr: string
  /** Runtime-specific workload reference, e.g. `{ namespace, job }`. */
  ref?: Record<string, string>
  /** Negotiated MCP protocol version. */
  pv: string
  /** Issued at, seconds since the epoch. */
  iat: number
  /** Hash of the authenticated principal, when there is one. */
  sub?: string
}

/** Longest token {@link SessionTokenCodec.open} looks at; longer input is rejected unread. */
export const MAX_TOKEN_LENGTH = 2048

const RFC1123_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/**
 * Validates claims both when sealing and after decrypting. Unknown claims are stripped rather
 * than rejected, so during a rolling upgrade an older bridge still opens a newer bridge's tokens.
 */
export const SessionClaimsSchema = z.object({
  v: z.literal(1),
  sid: z.string().regex(RFC1123_LABEL, 'must be an RFC 1123 label'),
  srv: z.string().min(1).max(256),
  rt: z.string().min(1).max(64),
  addr: z.string().min(1).max(512),
  ref: z.record(z.string(), z.string()).optional(),
  pv: z.string().min(1).max(64),
  iat: z.number().int().nonnegative(),
  sub: z.string().min(1).max(256).optional(),
}) satisfies z.ZodType<SessionClaims>

export interface SessionTokenCodecOptions {
  /** Tokens older than this are refused. Default 86,400 (one day); `Infinity` disables expiry. */
  maxAgeSeconds?: number
  /** Current time in **seconds** since the epoch (may be fractional). Default: the wall clock. */
  now?: () => number
  /** How many opened tokens to remember. Default 10,000; 0 disables the cache. */
  cacheSize?: number
}

const KID_PATTERN = /^[A-Za-z0-9_-]{1,16}$/
const IV_BYTES = 12
const TAG_BYTES = 16
const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder('utf-8', { fatal: true })

const deepFreeze = (claims: SessionClaims): SessionClaims => {
  if (claims.ref) Object.freeze(claims.ref)
  return Object.freeze(claims)
}

/**
 * Seals and opens session tokens with one keyring.
 *
 * Opening costs an AES-GCM decryption plus schema validation, so successfully opened tokens are
 * kept in a small LRU cache. Expiry is still checked on every call. The keyring is immutable and
 * the cache only ever holds tokens it opened, so after a key is retired build a new codec from
 * the new keyring — the old codec (and its cache) would keep accepting that key's tokens.
 */
export class SessionTokenCodec {
  readonly #keyring: Keyring
  readonly #maxAge: number
  readonly #now: () => number
  readonly #cacheSize: number
  // A Map iterates in insertion order, so re-inserting on a hit makes it an LRU.
  readonly #cache = new Map<string, SessionClaims>()

  constructor(keyring: Keyring, options?: SessionTokenCodecOptions) {
    this.#keyring = keyring
    this.#maxAge = options?.maxAgeSeconds ?? 86_400
    this.#now = options?.now ?? (() => Date.now() / 1000)
    this.#cacheSize = Math.max(0, Math.floor(options?.cacheSize ?? 10_000))
    if (!(this.#maxAge >= 0)) throw new RangeError('maxAgeSeconds must be a non-negative number')
  }

  /**
   * Seals claims with the keyring's primary key. `iat` defaults to now. Throws if the claims
   * fail {@link SessionClaimsSchema} or the token would exceed {@link MAX_TOKEN_LENGTH} —
   * both are caller bugs, since such a token could never be opened.
   */
  async seal(claims: Omit<SessionClaims, 'v' | 'iat'> & { iat?: number }): Promise<string> {
    const full = SessionClaimsSchema.parse({
      ...claims,
      v: 1,
      iat: claims.iat ?? Math.floor(this.#now()),
    })
    const kid = this.#keyring.primaryId
    const key = this.#keyring.aesKey(kid)!
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES))
    const sealed = await globalThis.crypto.subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: utf8Encoder.encode(kid), tagLength: TAG_BYTES * 8 },
      key,
      utf8Encoder.encode(JSON.stringify(full))
    )
    const body = new Uint8Array(IV_BYTES + sealed.byteLength)
    body.set(iv)
    body.set(new Uint8Array(sealed), IV_BYTES)
    const token = `${kid}.${encodeBase64url(body)}`
    if (token.length > MAX_TOKEN_LENGTH)
      throw new RangeError(`Session token would be ${token.length} characters; the limit is 2048`)
    return token
  }

  /**
   * The claims in a token, or `undefined` if it is malformed, sealed under a key not in the
   * ring, tampered with, expired, or its claims are invalid. Never throws for bad input.
   * The result is frozen (it may be shared with the cache).
   */
  async open(token: string): Promise<SessionClaims | undefined> {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return undefined
    const cached = this.#cache.get(token)
    if (cached) {
      if (this.#expired(cached)) {
        this.#cache.delete(token)
        return undefined
      }
      this.#cache.delete(token)
      this.#cache.set(token, cached)
      return cached
    }
    const claims = await this.#decrypt(token)
    if (!claims || this.#expired(claims)) return undefined
    if (this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!)
      this.#cache.set(token, claims)
    }
    return claims
  }

  /** The key id a token claims to be sealed with. Unauthenticated: use only after {@link open}. */
  keyIdOf(token: string): string | undefined {
    if (typeof token !== 'string') return undefined
    const dot = token.indexOf('.')
    const kid = dot < 0 ? '' : token.slice(0, dot)
    return KID_PATTERN.test(kid) ? kid : undefined
  }

  #expired(claims: SessionClaims): boolean {
    return claims.iat + this.#maxAge < this.#now()
  }

  async #decrypt(token: string): Promise<SessionClaims | undefined> {
    const kid = this.keyIdOf(token)
    const key = kid === undefined ? undefined : this.#keyring.aesKey(kid)
    if (kid === undefined || key === undefined) return undefined
    const body = decodeBase64url(token.slice(kid.length + 1))
    if (!body || body.length <= IV_BYTES + TAG_BYTES) return undefined
    try {
      const plain = await globalThis.crypto.subtle.decrypt(
        {
          name: 'AES-GCM',
          iv: body.subarray(0, IV_BYTES),
          additionalData: utf8Encoder.encode(kid),
          tagLength: TAG_BYTES * 8,
        },
        key,
        body.subarray(IV_BYTES)
      )
      const parsed = SessionClaimsSchema.safeParse(JSON.parse(utf8Decoder.decode(plain)))
      return parsed.success ? deepFreeze(parsed.data) : undefined
    } catch {
      return undefined // authentication failure, or (only with our own key) undecodable content
    }
  }
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

/**
 * A fresh session name: `ferry-` + 16 lowercase base32 characters (80 random bits). Safe as an
 * RFC 1123 label, so it can name the workload (Kubernetes Job, container) directly.
 */
export function newSessionName(): string {
  const random = globalThis.crypto.getRandomValues(new Uint8Array(16))
  let name = 'ferry-'
  // 256 is a multiple of 32, so masking keeps every character uniformly distributed.
  for (const byte of random) name += BASE32[byte & 31]
  return name
}
