/**
 * @module
 * Helpers shared by the sidecar's tests (not part of the package: excluded from its build).
 */
import { readFileSync, readdirSync } from 'node:fs'
import type { SidecarSettings } from './cli.ts'

/** Session settings for tests: generous limits, quiet logs, a short stop grace. */
export const TEST_SETTINGS: SidecarSettings = {
  idleTimeoutMs: 60_000,
  stopGraceMs: 200,
  maxLineBytes: 1 << 20,
  maxPayload: 1 << 20,
  heartbeatMs: 60_000,
  eventLog: { maxEvents: 100, maxBytes: 1 << 20, maxAgeMs: 60_000 },
  logLevel: 'silent',
}

/** Polls until `condition` holds, failing after a bounded wait. */
export const waitUntil = async (
  condition: () => boolean,
  what: string,
  boundMs = 5000
): Promise<void> => {
  const deadline = Date.now() + boundMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Live (not zombie) processes whose command line contains `marker` (Linux /proc). */
export const liveProcessesWith = (marker: string): number[] =>
  readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
        const state = stat.slice(stat.lastIndexOf(')') + 2)[0]
        return state !== 'Z' && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)
      } catch {
        return false
      }
    })
    .map(Number)
