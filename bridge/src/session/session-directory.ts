/**
 * @module
 * Where the bridge finds sessions without keeping any: it mints session ids when
 * a session starts and reads everything back out of them on later requests —
 * which server, which runtime, the sidecar's address and the per-session secret.
 */
import type { Keyring } from './keyring.ts'
import { deriveSidecarSecret } from './sidecar-secret.ts'
import { type SessionClaims, SessionTokenCodec, newSessionName } from './token.ts'
import type { SessionTarget } from '../relay/connection-pool.ts'

export interface SessionDirectoryOptions {
  keyring: Keyring
  /** Session ids older than this are refused. */
  maxAgeSeconds: number
}

/** A session id's claims and how to reach its sidecar. */
export interface ResolvedSession {
  claims: SessionClaims
  target: SessionTarget
}

export class SessionDirectory {
  private readonly keyring: Keyring
  private readonly codec: SessionTokenCodec
  /**
   * What each claims object resolved to. The codec hands out the same frozen claims for a
   * token while it caches it, so a session's requests share one resolution instead of
   * building it anew each time; entries go with the claims.
   */
  private readonly resolved = new WeakMap<SessionClaims, ResolvedSession>()

  constructor(options: SessionDirectoryOptions) {
    this.keyring = options.keyring
    this.codec = new SessionTokenCodec(options.keyring, { maxAgeSeconds: options.maxAgeSeconds })
  }

  /** A fresh session name and the secret its sidecar will demand. */
  async newSession(): Promise<{ sessionName: string; secret: string }> {
    const sessionName = newSessionName()
    const secret = await deriveSidecarSecret(this.keyring, this.keyring.primaryId, sessionName)
    return { sessionName, secret }
  }

  mint(claims: Omit<SessionClaims, 'v' | 'iat'>): Promise<string> {
    return this.codec.seal(claims)
  }

  /** The session a session id names, or undefined when it is not a valid id of ours. */
  async resolve(sessionId: string): Promise<ResolvedSession | undefined> {
    const claims = await this.codec.open(sessionId)
    if (!claims) return undefined
    const known = this.resolved.get(claims)
    if (known) return known
    const keyId = this.codec.keyIdOf(sessionId)!
    const session: ResolvedSession = {
      claims,
      target: {
        sessionName: claims.sid,
        address: claims.addr,
        workload: { runtime: claims.rt, ...(claims.ref ? { ref: claims.ref } : {}) },
        // Derived only to dial, which pooled connections rarely need.
        secret: () => deriveSidecarSecret(this.keyring, keyId, claims.sid),
      },
    }
    this.resolved.set(claims, session)
    return session
  }
}
