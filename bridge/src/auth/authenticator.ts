/**
 * @module
 * Authenticates an MCP request from its `Authorization: Bearer` header, per the MCP
 * authorization rules with the bridge as an OAuth 2.1 resource server:
 *
 * - `mode: none`: every request is the anonymous principal.
 * - `mode: bearer`: the token's SHA-256 must match a configured static token.
 * - `mode: jwt`: the token must be a JWT signed by a key in the issuer's JWKS with an allowed
 *   algorithm, from the configured issuer, for this endpoint's audience (RFC 8707; by default
 *   the canonical URI of the endpoint requested), unexpired within the clock skew.
 *
 * Then the principal must hold every required scope. Tokens are read only from the header —
 * never from the query string or the body — and are never logged, echoed or passed on: the
 * bridge consumes the client's token, and nothing downstream (sidecar, pod, MCP server) sees it.
 *
 * Keys come from `createRemoteJWKSet` (jose): cached for `jwksCacheMaxAge`, refetched when a
 * token names an unknown key id but at most once per `jwksCooldown`, so a rotated issuer key is
 * picked up at once while random key ids cannot make the bridge hammer the issuer.
 */
import {
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  jwtVerify,
} from 'jose'
import type {
  AuthMode,
  AuthSettings,
  BearerAuthSettings,
  Catalog,
  JwtAuthSettings,
} from '@ferry/shared'
import {
  type AuthFailure,
  type AuthFailureReason,
  insufficientScope,
  unauthorized,
  verifierUnavailable,
} from './challenge.ts'
import { type Principal, anonymousPrincipal } from './principal.ts'
import { resourceMetadataUrl } from './resource-metadata.ts'
import { StaticTokens } from './static-tokens.ts'

/** The outcome of {@link Authenticator.authenticate}. */
export type AuthResult = { principal: Principal } | { failure: AuthFailure }

export interface Authenticator {
  readonly mode: AuthMode
  /**
   * Authenticates `request` for the MCP endpoint whose canonical URI is `resource` (see
   * `resourceForRequest`): the token's audience by default, and where the challenge's
   * `resource_metadata` points. Never throws for bad input.
   */
  authenticate(request: Request, resource: string): Promise<AuthResult>
}

export interface AuthenticatorOptions {
  /** Current time in milliseconds since the epoch, for token expiry. Default: the wall clock. */
  now?: () => number
  /** `fetch` used for the JWKS. Default: the global one. */
  fetch?: typeof globalThis.fetch
}

// Longer headers are refused unread: real access tokens are a few KiB at most.
const MAX_TOKEN_LENGTH = 16_384
// RFC 6750 §2.1: `Bearer` 1*SP b64token.
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i
const SCHEME = /^([A-Za-z][A-Za-z0-9!#$%&'*+\-.^_`|~]*)(?: |$)/

// How long a client should wait when the issuer's JWKS cannot be fetched.
const JWKS_RETRY_AFTER_SECONDS = 5

/** Marks a failure to obtain the issuer's keys, as opposed to a bad token. */
class JwksUnavailable extends Error {}

type Extracted = { token: string } | { failure: AuthFailureReason; message: string }

const extractToken = (request: Request): Extracted => {
  const header = request.headers.get('authorization')
  if (header === null) {
    const query = new URL(request.url).searchParams
    return {
      failure: 'missing_token',
      message: query.has('access_token')
        ? 'tokens in the query string are not accepted; send Authorization: Bearer <token>'
        : 'authentication required: send Authorization: Bearer <token>',
    }
  }
  const scheme = SCHEME.exec(header.trim())?.[1]
  if (scheme?.toLowerCase() !== 'bearer')
    return {
      failure: 'missing_token',
      message: 'only Bearer tokens are accepted: send Authorization: Bearer <token>',
    }
  if (header.length > MAX_TOKEN_LENGTH)
    return { failure: 'malformed_token', message: 'the token is too long' }
  const token = BEARER.exec(header.trim())?.[1]
  if (token === undefined) return { failure: 'malformed_token', message: 'malformed bearer token' }
  return { token }
}

const scopesOf = (payload: JWTPayload, claims: readonly string[]): string[] => {
  const scopes = new Set<string>()
  for (const claim of claims) {
    const value = payload[claim]
    const list = typeof value === 'string' ? value.split(' ') : Array.isArray(value) ? value : []
    for (const scope of list) if (typeof scope === 'string' && scope !== '') scopes.add(scope)
  }
  return [...scopes]
}

/** Maps a jose (or key-source) error to a reason and a fixed description. */
const classifyJwtError = (error: unknown): { reason: AuthFailureReason; message: string } => {
  if (error instanceof errors.JWTExpired) return { reason: 'expired', message: 'the token expired' }
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'nbf':
        return { reason: 'not_yet_valid', message: 'the token is not valid yet' }
      case 'iss':
        return { reason: 'wrong_issuer', message: 'the token is from another issuer' }
      case 'aud':
        return { reason: 'wrong_audience', message: 'the token was issued for another resource' }
      default:
        return {
          reason: 'invalid_claims',
          message:
            error.reason !== 'missing'
              ? 'the token has an invalid claim'
              : error.claim === 'exp'
                ? 'the token has no expiry (exp claim)'
                : 'the token lacks a required claim',
        }
    }
  }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys)
    return {
      reason: 'unknown_key',
      message: "the token's signing key is not among the issuer's keys",
    }
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return { reason: 'bad_signature', message: 'the token signature is invalid' }
  if (error instanceof errors.JOSEAlgNotAllowed)
    return {
      reason: 'algorithm_not_allowed',
      message: 'the token signature algorithm is not accepted',
    }
  return { reason: 'malformed_token', message: 'malformed token' }
}

const remoteKeys = (settings: JwtAuthSettings, options: AuthenticatorOptions): JWTVerifyGetKey => {
  const remote = createRemoteJWKSet(new URL(settings.jwksUri!), {
    timeoutDuration: settings.jwksTimeout,
    cooldownDuration: settings.jwksCooldown,
    cacheMaxAge: settings.jwksCacheMaxAge,
    ...(options.fetch ? { [customFetch]: options.fetch } : {}),
  })
  return async (header, token) => {
    try {
      return await remote(header, token)
    } catch (error) {
      if (
        error instanceof errors.JWKSNoMatchingKey ||
        error instanceof errors.JWKSMultipleMatchingKeys ||
        error instanceof errors.JOSEAlgNotAllowed ||
        error instanceof errors.JOSENotSupported
      )
        throw error
      // A timeout, a network error, a non-200 answer or a document that is not a JWKS.
      throw new JwksUnavailable('JWKS unavailable', { cause: error })
    }
  }
}

/** An {@link Authenticator} for one `auth` block (the bridge's, or a server's own). */
export function createAuthenticator(
  settings: AuthSettings,
  options: AuthenticatorOptions = {}
): Authenticator {
  if (settings.mode === 'none') {
    return { mode: 'none', authenticate: async () => ({ principal: anonymousPrincipal() }) }
  }
  const challengeScopes = settings.requiredScopes.length
    ? settings.requiredScopes
    : settings.scopesSupported

  const finish = (principal: Principal, metadata: string): AuthResult => {
    const missing = settings.requiredScopes.filter((scope) => !principal.scopes.includes(scope))
    return missing.length
      ? { failure: insufficientScope(settings.requiredScopes, metadata) }
      : { principal }
  }

  const verify =
    settings.mode === 'bearer' ? bearerVerifier(settings) : jwtVerifier(settings, options)

  return {
    mode: settings.mode,
    async authenticate(request, resource) {
      const metadata = resourceMetadataUrl(resource)
      const challenge = { resourceMetadata: metadata, scopes: challengeScopes }
      const extracted = extractToken(request)
      if ('failure' in extracted)
        return { failure: unauthorized(extracted.failure, extracted.message, challenge) }
      const verified = await verify(extracted.token, resource)
      if ('principal' in verified) return finish(verified.principal, metadata)
      if (verified.reason === 'jwks_unavailable')
        return { failure: verifierUnavailable(JWKS_RETRY_AFTER_SECONDS) }
      return { failure: unauthorized(verified.reason, verified.message, challenge) }
    },
  }
}

type Verified = { principal: Principal } | { reason: AuthFailureReason; message: string }

const bearerVerifier = (settings: BearerAuthSettings) => {
  const tokens = new StaticTokens(settings.tokens)
  return async (token: string): Promise<Verified> => {
    const entry = await tokens.find(token)
    if (!entry) return { reason: 'unknown_token', message: 'unknown token' }
    return { principal: { id: entry.principal, scopes: [...entry.scopes], method: 'bearer' } }
  }
}

const jwtVerifier = (settings: JwtAuthSettings, options: AuthenticatorOptions) => {
  const keys: JWTVerifyGetKey = settings.jwks
    ? createLocalJWKSet(settings.jwks as JSONWebKeySet)
    : remoteKeys(settings, options)
  return async (token: string, resource: string): Promise<Verified> => {
    let payload: JWTPayload
    try {
      const checks = {
        issuer: settings.issuer,
        audience: settings.audience ?? resource,
        algorithms: settings.algorithms,
        clockTolerance: settings.clockSkew / 1000,
        requiredClaims: ['exp'],
        ...(options.now ? { currentDate: new Date(options.now()) } : {}),
      }
      payload = (await jwtVerify(token, keys, checks)).payload
    } catch (error) {
      if (error instanceof JwksUnavailable)
        return { reason: 'jwks_unavailable', message: 'JWKS unavailable' }
      return classifyJwtError(error)
    }
    const id = payload[settings.principalClaim]
    if (typeof id !== 'string' || id === '')
      return {
        reason: 'invalid_claims',
        message: 'the token does not name its principal',
      }
    return { principal: { id, scopes: scopesOf(payload, settings.scopeClaims), method: 'jwt' } }
  }
}

/**
 * One authenticator per server of the catalog: the server's own `auth`, or the bridge's. Servers
 * without their own share one authenticator, and with it one JWKS cache.
 */
export function createCatalogAuthenticators(
  catalog: Pick<Catalog, 'bridge' | 'servers'>,
  options: AuthenticatorOptions = {}
): Record<string, Authenticator> {
  let shared: Authenticator | undefined
  return Object.fromEntries(
    Object.entries(catalog.servers).map(([name, server]) => [
      name,
      server.auth
        ? createAuthenticator(server.auth, options)
        : (shared ??= createAuthenticator(catalog.bridge.auth, options)),
    ])
  )
}
