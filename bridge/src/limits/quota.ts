/**
 * @module
 * The result every quota check returns when a limit is reached, and its HTTP form: 429 with
 * `Retry-After` and a JSON-RPC error naming the limit.
 */
import { ErrorCode, type JSONRPCId } from '@ferry/shared'
import { FerryHTTPError } from '../errors.ts'

/** The quotas of `bridge.limits` (and `servers.<name>.limits.maxSessions`). */
export type LimitName =
  | 'maxSessions'
  | 'maxSessionsPerPrincipal'
  | 'maxSessionsPerServer'
  | 'sessionRate'
  | 'maxInFlightPerSession'
  | 'maxStreamsPerSession'
  | 'sessionCount.maxUncounted'

/** A refused acquisition: which limit, its configured value, and when to try again. */
export interface QuotaExceeded {
  ok: false
  limit: LimitName
  /** The catalog field that set the value, e.g. `servers.github.limits.maxSessions`. */
  setting: string
  /** The configured value (for `sessionRate`, `perMinute`). */
  value: number
  /** Seconds after which trying again can succeed (at least 1). */
  retryAfterSeconds: number
  /** A sentence for the client, naming the limit. */
  message: string
}

/** Builds a {@link QuotaExceeded}; `setting` defaults to `bridge.limits.<limit>`. */
export function quotaExceeded(
  limit: LimitName,
  value: number,
  retryAfterSeconds: number,
  message: string,
  setting = `bridge.limits.${limit}`
): QuotaExceeded {
  return {
    ok: false,
    limit,
    setting,
    value,
    retryAfterSeconds: Math.max(1, Math.ceil(retryAfterSeconds)),
    message,
  }
}

/**
 * The HTTP error for a refused acquisition: 429, `Retry-After`, and a JSON-RPC error whose
 * message names the limit and whose `data` is `{ limit, setting, value, retryAfterSeconds }`.
 */
export function quotaExceededError(
  quota: QuotaExceeded,
  id: JSONRPCId | null = null
): FerryHTTPError {
  return new FerryHTTPError(429, ErrorCode.ServerError, quota.message, {
    data: {
      limit: quota.limit,
      setting: quota.setting,
      value: quota.value,
      retryAfterSeconds: quota.retryAfterSeconds,
    },
    headers: { 'retry-after': String(quota.retryAfterSeconds) },
    id,
  })
}
