/** @module Tests for quota refusals and their HTTP form. */
import { describe, expect, it } from 'vitest'
import { quotaExceeded, quotaExceededError } from './quota.ts'

describe('quotaExceeded', () => {
  it('rounds Retry-After up to whole seconds, at least 1', () => {
    expect(quotaExceeded('sessionRate', 6, 0.01, 'm').retryAfterSeconds).toBe(1)
    expect(quotaExceeded('sessionRate', 6, 2.2, 'm').retryAfterSeconds).toBe(3)
    expect(quotaExceeded('sessionRate', 6, 0, 'm').retryAfterSeconds).toBe(1)
  })

  it('becomes 429 with Retry-After and a JSON-RPC error naming the limit', async () => {
    const quota = quotaExceeded(
      'maxSessionsPerServer',
      3,
      5,
      'Too many sessions of server "gh": at most 3 at once (servers.gh.limits.maxSessions)',
      'servers.gh.limits.maxSessions'
    )
    const response = quotaExceededError(quota, 'init-1').toResponse()
    expect(response.status).toBe(429)
    expect(response.headers.get('retry-after')).toBe('5')
    expect(await response.json()).toEqual({
      jsonrpc: '2.0',
      id: 'init-1',
      error: {
        code: -32000,
        message:
          'Too many sessions of server "gh": at most 3 at once (servers.gh.limits.maxSessions)',
        data: {
          limit: 'maxSessionsPerServer',
          setting: 'servers.gh.limits.maxSessions',
          value: 3,
          retryAfterSeconds: 5,
        },
      },
    })
  })
})
