/**
 * @module
 * Authentication failures and their `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9728 §5.1,
 * MCP authorization): 401 for a missing or bad token, 403 `insufficient_scope` for a good token
 * without the scopes, 503 when the issuer's keys cannot be fetched. Descriptions are fixed
 * strings: nothing from the token ever reaches a header, a body or a log.
 */
import { ErrorCode, type JSONRPCId } from '@ferry/shared'
import { FerryHTTPError } from '../errors.ts'

/** Why a request was not authenticated; for logs and metrics. */
export type AuthFailureReason =
  | 'missing_token'
  | 'malformed_token'
  | 'unknown_token'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'unknown_key'
  | 'bad_signature'
  | 'algorithm_not_allowed'
  | 'invalid_claims'
  | 'insufficient_scope'
  | 'jwks_unavailable'

/** A refused request: what to answer and why. */
export interface AuthFailure {
  /** 401 (no or bad token), 403 (insufficient scope) or 503 (the issuer's keys are unreachable). */
  status: 401 | 403 | 503
  reason: AuthFailureReason
  /** Safe to return and log: a fixed description, never token contents. */
  message: string
  /** Headers to send: `WWW-Authenticate` for 401 and 403, `Retry-After` for 503. */
  headers: Record<string, string>
}

// RFC 7230 quoted-string; inputs are URLs, validated scopes and fixed text, but stay safe anyway.
const quote = (value: string): string =>
  `"${value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/[\r\n]/g, ' ')}"`

/** Parameters of a `Bearer` challenge, in the order they are written. */
export interface ChallengeParams {
  error?: 'invalid_token' | 'insufficient_scope'
  errorDescription?: string
  resourceMetadata?: string
  scopes?: readonly string[]
}

/**
 * A `WWW-Authenticate: Bearer …` value: `error`, `scope`, `resource_metadata` for
 * `insufficient_scope` (as the MCP specification writes it), otherwise `resource_metadata`,
 * `scope`, then `error` and `error_description` when a token was presented.
 */
export function bearerChallenge(params: ChallengeParams): string {
  const scope = params.scopes?.length ? `scope=${quote(params.scopes.join(' '))}` : undefined
  const metadata =
    params.resourceMetadata === undefined
      ? undefined
      : `resource_metadata=${quote(params.resourceMetadata)}`
  const error = params.error === undefined ? undefined : `error=${quote(params.error)}`
  const description =
    params.errorDescription === undefined
      ? undefined
      : `error_description=${quote(params.errorDescription)}`
  const parts =
    params.error === 'insufficient_scope'
      ? [error, scope, metadata, description]
      : [metadata, scope, error, description]
  const present = parts.filter((part) => part !== undefined)
  return present.length ? `Bearer ${present.join(', ')}` : 'Bearer'
}

/** A 401: no token (`description` only explains, no `error`) or a bad one (`invalid_token`). */
export function unauthorized(
  reason: AuthFailureReason,
  message: string,
  challenge: { resourceMetadata: string; scopes: readonly string[] }
): AuthFailure {
  const presented = reason !== 'missing_token'
  return {
    status: 401,
    reason,
    message,
    headers: {
      'www-authenticate': bearerChallenge({
        resourceMetadata: challenge.resourceMetadata,
        scopes: challenge.scopes,
        ...(presented ? { error: 'invalid_token' as const, errorDescription: message } : {}),
      }),
    },
  }
}

/** A 403 `insufficient_scope` naming the scopes to ask for. */
export function insufficientScope(
  scopes: readonly string[],
  resourceMetadata: string | undefined
): AuthFailure {
  return {
    status: 403,
    reason: 'insufficient_scope',
    message: `the token lacks a required scope (${scopes.join(' ')})`,
    headers: {
      'www-authenticate': bearerChallenge({
        error: 'insufficient_scope',
        scopes,
        ...(resourceMetadata === undefined ? {} : { resourceMetadata }),
      }),
    },
  }
}

/** A 503: the token cannot be checked now (the issuer's JWKS is unreachable). */
export function verifierUnavailable(retryAfterSeconds: number): AuthFailure {
  return {
    status: 503,
    reason: 'jwks_unavailable',
    message: "the token cannot be verified now: the issuer's keys are unreachable",
    headers: { 'retry-after': String(retryAfterSeconds) },
  }
}

/** The HTTP error for a failure: its status and headers, a JSON-RPC error body naming the reason. */
export function authFailureError(
  failure: AuthFailure,
  id: JSONRPCId | null = null
): FerryHTTPError {
  return new FerryHTTPError(
    failure.status,
    failure.status === 503 ? ErrorCode.ServerError : ErrorCode.InvalidRequest,
    failure.status === 403
      ? `Forbidden: ${failure.message}`
      : failure.status === 401
        ? `Unauthorized: ${failure.message}`
        : `Service unavailable: ${failure.message}`,
    { data: { reason: failure.reason }, headers: failure.headers, id }
  )
}
