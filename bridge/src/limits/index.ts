/**
 * @module
 * Quotas that stop one client spending the cluster: concurrent sessions (global, per
 * principal, per server), session start rate per principal, and per-session in-flight
 * requests and streams. See `docs/security.md` for what each defends.
 */
export { type InFlightLimiterOptions, type Permit, InFlightLimiter } from './in-flight.ts'
export { type LimitName, type QuotaExceeded, quotaExceeded, quotaExceededError } from './quota.ts'
export {
  type ClusterSession,
  type ClusterSessionCounterOptions,
  type LocalSessionCounterOptions,
  type SessionCounter,
  type SessionCounts,
  type SessionLimits,
  type SessionRequest,
  type SessionSlot,
  ClusterSessionCounter,
  LocalSessionCounter,
  SessionCountUnavailable,
  sessionLimitsOf,
} from './session-counter.ts'
export {
  type RateLimiterOptions,
  type TakeResult,
  type TokenBucketOptions,
  RateLimiter,
  TokenBucket,
} from './token-bucket.ts'
