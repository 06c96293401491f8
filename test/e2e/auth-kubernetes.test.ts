/**
 * @module
 * Cluster-wide session quotas (issue #6) with the Kubernetes runtime against the simulated
 * cluster: two bridge replicas sharing a keyring count the session Jobs (by their
 * `ferry.dev/principal` label) and together overshoot a limit by at most
 * `(replicas − 1) × maxUncounted` sessions, and only until their next listing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring, type RunningBridge, hashToken, principalKey, serveBridge } from '@ferry/bridge'
import { CatalogSchema, createLogger } from '@ferry/shared'
import {
  type TestCluster,
  cleanCluster,
  kubernetesRuntime,
  kubernetesServer,
  podProcesses,
  settledOrphans,
  startTestCluster,
} from '../helpers/kubernetes.ts'
import { killTrees } from '../helpers/processes.ts'
import { type JsonRpcMessage, initializeRequest, post, postHeaders } from '../helpers/mcp.ts'

const IP_PREFIX = '127.0.48.'
const TOKEN = 'ferry_cluster-quota-token-abcdefghijklmnopqrstuvwxyz012345'
const LIMIT = 2
const MAX_UNCOUNTED = 1
const REFRESH_MS = 400

let cluster: TestCluster
const replicas: RunningBridge[] = []

beforeAll(async () => {
  cluster = await startTestCluster({
    tier: 'sim',
    namespace: 'ferry-quota',
    kubelet: { ipPrefix: IP_PREFIX, stopGraceMs: 500, maxGracePeriodMs: 3000 },
  })
  const keyring = await Keyring.generate()
  const catalog = CatalogSchema.parse({
    bridge: {
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      shutdownGrace: '200ms',
      auth: {
        mode: 'bearer',
        tokens: [{ sha256: await hashToken(TOKEN), principal: 'quota-user' }],
      },
      limits: {
        maxSessionsPerPrincipal: LIMIT,
        sessionRate: { perMinute: 600, burst: 100 },
        sessionCount: { refreshInterval: `${REFRESH_MS}ms`, maxUncounted: MAX_UNCOUNTED },
      },
    },
    servers: { k: kubernetesServer(cluster.namespace) },
  })
  for (let i = 0; i < 2; i++) {
    replicas.push(
      await serveBridge({
        catalog,
        keyring,
        logger: createLogger({ name: 'bridge', level: 'silent' }),
        runtimes: { kubernetes: kubernetesRuntime(cluster) },
      })
    )
  }
}, 120_000)

afterAll(async () => {
  for (const replica of replicas) await replica.stop()
  if (cluster) {
    await settledOrphans(cluster).catch(() => undefined)
    await cleanCluster(cluster)
    killTrees(podProcesses(IP_PREFIX).map((line) => Number(line.split(' ')[0])))
    await cluster.stop()
  }
})

const url = (replica: RunningBridge) => `http://127.0.0.1:${replica.port}/k/mcp`
const headers = postHeaders(undefined, { authorization: `Bearer ${TOKEN}` })
const initialize = (replica: RunningBridge) => post(url(replica), initializeRequest(), headers)

describe('cluster-wide session quotas', () => {
  it('labels Jobs with the principal and bounds the overshoot of two replicas', async () => {
    // Concurrent starts on both replicas, before either has listed the other's Jobs.
    const responses = await Promise.all(
      replicas.flatMap((replica) => [initialize(replica), initialize(replica), initialize(replica)])
    )
    const admitted = responses.filter((r) => r.headers.has('mcp-session-id'))
    const refused = responses.filter((r) => r.status === 429)
    expect(admitted.length + refused.length).toBe(responses.length)
    expect(admitted.length).toBeGreaterThanOrEqual(LIMIT)
    expect(admitted.length).toBeLessThanOrEqual(LIMIT + (replicas.length - 1) * MAX_UNCOUNTED)
    for (const response of refused) {
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      const body = (await response.json()) as JsonRpcMessage
      expect(['maxSessionsPerPrincipal', 'sessionCount.maxUncounted']).toContain(
        (body.error?.data as { limit: string }).limit
      )
    }
    const key = await principalKey({ id: 'quota-user', scopes: [], method: 'bearer' })
    const jobs = cluster.jobs()
    expect(jobs.length).toBe(admitted.length)
    for (const job of jobs) expect(job.metadata?.labels?.['ferry.dev/principal']).toBe(key)

    // Once both have listed the Jobs, neither admits another.
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS + 100))
    for (const replica of replicas) {
      const response = await initialize(replica)
      expect(response.status).toBe(429)
      const body = (await response.json()) as JsonRpcMessage
      expect((body.error?.data as { limit: string }).limit).toBe('maxSessionsPerPrincipal')
    }

    // Ending sessions (DELETE on either replica) frees places after the next listing.
    for (const [i, response] of admitted.entries()) {
      const response2 = await fetch(url(replicas[i % 2]!), {
        method: 'DELETE',
        headers: {
          'mcp-session-id': response.headers.get('mcp-session-id')!,
          authorization: `Bearer ${TOKEN}`,
        },
      })
      expect(response2.status).toBe(200)
    }
    const deadline = Date.now() + 15_000
    while (cluster.jobs().some((job) => !job.metadata?.deletionTimestamp) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100))
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS + 100))
    const again = await initialize(replicas[0]!)
    expect(again.headers.has('mcp-session-id')).toBe(true)
    await fetch(url(replicas[0]!), {
      method: 'DELETE',
      headers: {
        'mcp-session-id': again.headers.get('mcp-session-id')!,
        authorization: `Bearer ${TOKEN}`,
      },
    })
  }, 90_000)
})
