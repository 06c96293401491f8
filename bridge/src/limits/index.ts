/**
 * @module
 * Quotas that stop one client spending the cluster: concurrent sessions (global, per
 * principal, per server), session start rate per principal, and per-session in-flight
 * requests and streams (see `docs/security.md` for what each defends); and the gate that lets
 * local session starts boot a few at a time.
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
export { type StartTurn, type StartTurnRequest, StartGate, StartTooLate } from './start-gate.ts'
export {
  type RateLimiterOptions,
  type TakeResult,
  type TokenBucketOptions,
  RateLimiter,
  TokenBucket,
} from './token-bucket.ts'
