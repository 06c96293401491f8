/**
 * @module test/auth/issuer
 *
 * A test OAuth issuer on 127.0.0.1: generates signing keys with jose, serves the public ones as
 * a JWKS at `/jwks.json` over node:http, and signs access tokens. Keys can be added, retired
 * and kept unpublished (to sign with a key id the JWKS does not have), and the JWKS endpoint can
 * be made to fail, so every verification path of the bridge runs against real HTTP.
 */
import { type Server, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  type CryptoKey,
  type JWK,
  type JWTPayload,
  SignJWT,
  exportJWK,
  generateKeyPair,
} from 'jose'

export interface IssuerKey {
  kid: string
  alg: string
  privateKey: CryptoKey
  publicJwk: JWK
}

export interface SignOptions {
  /** Key to sign with (default: the newest published key). */
  key?: IssuerKey
  /** Header `kid` to write (default: the key's). */
  kid?: string
  /** Lifetime in seconds from `now` (default 300); negative for an expired token. */
  expiresIn?: number
  /** `nbf` in seconds from now. */
  notBefore?: number
  /** Seconds since the epoch used for `iat`, `exp`, `nbf` (default: the wall clock). */
  now?: number
  /** Override `iss` (default: the issuer). */
  issuer?: string
  /** Leave `exp` out. */
  noExpiry?: boolean
}

export interface TestIssuer {
  /** Issuer identifier, `http://127.0.0.1:<port>`. */
  readonly issuer: string
  readonly jwksUri: string
  /** How many times `/jwks.json` was fetched. */
  readonly fetches: number
  /** Generates a key; published in the JWKS unless `publish` is false. */
  addKey(options?: {
    kid?: string
    alg?: 'RS256' | 'ES256' | 'PS256'
    publish?: boolean
  }): Promise<IssuerKey>
  /** Stops publishing a key (it can still sign, as a retired key would). */
  retire(kid: string): void
  /** The newest published key. */
  readonly current: IssuerKey
  sign(claims: JWTPayload, options?: SignOptions): Promise<string>
  /** Makes `/jwks.json` answer this HTTP status (`undefined`: serve the keys again). */
  failWith(status: number | undefined): void
  close(): Promise<void>
}

let counter = 0

export async function startIssuer(): Promise<TestIssuer> {
  const published: IssuerKey[] = []
  let fetches = 0
  let failing: number | undefined
  const server: Server = createServer((request, response) => {
    if (request.url !== '/jwks.json') {
      response.writeHead(404).end()
      return
    }
    fetches++
    if (failing !== undefined) {
      response.writeHead(failing).end('unavailable')
      return
    }
    const body = JSON.stringify({ keys: published.map((key) => key.publicJwk) })
    response.writeHead(200, { 'content-type': 'application/json' }).end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const issuer = `http://127.0.0.1:${port}`

  const self: TestIssuer = {
    issuer,
    jwksUri: `${issuer}/jwks.json`,
    get fetches() {
      return fetches
    },
    async addKey(options = {}) {
      const alg = options.alg ?? 'RS256'
      const kid = options.kid ?? `key-${++counter}`
      const { privateKey, publicKey } = await generateKeyPair(alg)
      const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
      const key = { kid, alg, privateKey, publicJwk }
      if (options.publish !== false) published.push(key)
      return key
    },
    retire(kid) {
      const index = published.findIndex((key) => key.kid === kid)
      if (index >= 0) published.splice(index, 1)
    },
    get current() {
      const key = published[published.length - 1]
      if (!key) throw new Error('the issuer publishes no key')
      return key
    },
    async sign(claims, options = {}) {
      const key = options.key ?? self.current
      const now = options.now ?? Math.floor(Date.now() / 1000)
      let jwt = new SignJWT(claims)
        .setProtectedHeader({ alg: key.alg, kid: options.kid ?? key.kid, typ: 'at+jwt' })
        .setIssuer(options.issuer ?? issuer)
        .setIssuedAt(now)
      if (!options.noExpiry) jwt = jwt.setExpirationTime(now + (options.expiresIn ?? 300))
      if (options.notBefore !== undefined) jwt = jwt.setNotBefore(now + options.notBefore)
      return jwt.sign(key.privateKey)
    },
    failWith(status) {
      failing = status
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }
  return self
}
