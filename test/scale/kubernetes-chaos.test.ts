/**
 * @module test/scale/kubernetes-chaos
 *
 * Chaos test (a) of `chaos.test.ts` on the Kubernetes runtime: three bridge replicas behind the
 * round-robin proxy, sessions as Jobs in the simulated cluster (`test/k8s`: fake API server, Job
 * controller, kubelet simulator whose pods are real local processes on their own loopback IPs).
 * A replica carrying a long streaming call is killed part-way; the client resumes on another
 * replica with `Last-Event-ID` and gets every remaining message exactly once, in order. Resume
 * latency (kill → first event on the resumed stream) is printed as p50/p99.
 *
 * The replicas run in this process (`serveBridge` with an injected `KubernetesRuntime`), not as
 * `ferry serve` processes: the pods must run the work tree's sidecar bundle, and the runtime
 * takes `sidecarPath` only programmatically — neither the catalog nor the CLI can set it. Killing
 * a replica = closing its HTTP server abruptly (every connection destroyed) and dropping its
 * sidecar connections; restarting it = a new bridge on the same port with the same keyring.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring, type RunningBridge, serveBridge } from '@ferry/bridge'
import { CatalogSchema, createLogger } from '@ferry/shared'
import { startSimulatedCluster, type SimulatedCluster } from '../k8s/cluster.ts'
import {
  cleanCluster,
  kubernetesRuntime,
  kubernetesServer,
  percentile,
  settledOrphans,
} from '../helpers/kubernetes.ts'
import { openRawSession, textOf } from '../helpers/mcp.ts'
import { type RoundRobinProxy, startRoundRobinProxy } from '../helpers/replicas.ts'
import { checkProgressStream, streamCall } from './raw-client.ts'

const NAMESPACE = 'ferry-scale'

interface InProcessReplica {
  port: number
  running: RunningBridge | undefined
}

let cluster: SimulatedCluster
let keyring: Keyring
let proxy: RoundRobinProxy
const replicas: InProcessReplica[] = [0, 1, 2].map(() => ({ port: 0, running: undefined }))
const logger = createLogger({ name: 'bridge', level: 'silent' })

const catalogFor = (port: number) =>
  CatalogSchema.parse({
    bridge: {
      host: '127.0.0.1',
      port,
      logLevel: 'silent',
      shutdownGrace: '1s',
      sse: { retry: 200 },
    },
    defaultServer: 'fixture',
    servers: { fixture: kubernetesServer(NAMESPACE, { startTimeout: '20s' }) },
  })

/** Starts replica `index` (on its port once it has one), sharing the one keyring. */
const start = async (index: number) => {
  const replica = replicas[index]!
  replica.running = await serveBridge({
    catalog: catalogFor(replica.port),
    keyring,
    logger,
    runtimes: { kubernetes: kubernetesRuntime(cluster, { namespaces: [NAMESPACE] }) },
  })
  replica.port = replica.running.port
}

/** Kills replica `index` abruptly: every HTTP connection and sidecar connection dropped at once. */
const kill = async (index: number) => {
  const replica = replicas[index]!
  const running = replica.running
  if (!running) return
  replica.running = undefined
  running.bridge.drain()
  running.server.close()
  if ('closeAllConnections' in running.server) running.server.closeAllConnections()
  await running.bridge.close()
}

beforeAll(async () => {
  cluster = await startSimulatedCluster({
    namespace: NAMESPACE,
    kubelet: { ipPrefix: '127.0.57.', stopGraceMs: 500, maxGracePeriodMs: 3000 },
  })
  keyring = await Keyring.generate()
  for (let i = 0; i < replicas.length; i++) await start(i)
  proxy = await startRoundRobinProxy(() => replicas.map((replica) => replica.port), {
    probe: { path: '/readyz', intervalMs: 100 },
  })
})

afterAll(async () => {
  await proxy?.close()
  for (const replica of replicas) await replica.running?.stop()
  if (!cluster) return
  const left = await settledOrphans(cluster)
  await cleanCluster(cluster)
  await cluster.stop()
  expect(left, 'Jobs, pods or pod processes left behind').toEqual({
    jobs: [],
    pods: [],
    processes: [],
  })
}, 60_000)

describe('chaos on the Kubernetes runtime: three replicas behind a round-robin proxy', () => {
  it('resumes a stream cut by a replica kill on another replica: every message once, in order', async () => {
    const KILLS = 10
    const COUNT = 200
    const session = await openRawSession(proxy.url('/mcp'))
    // One session, one Job: its pod holds the state whatever replica serves a request.
    expect(cluster.orphans().jobs).toHaveLength(1)
    const latencies: number[] = []
    for (let round = 0; round < KILLS; round++) {
      for (let i = 0; i < replicas.length; i++) if (!replicas[i]!.running) await start(i)
      const killAt = 40 + ((round * 37) % 120)
      let killed: Promise<void> | undefined
      let killedAt = 0
      let victim = -1
      const call = await streamCall(
        session,
        {
          jsonrpc: '2.0',
          id: round + 1,
          method: 'tools/call',
          params: {
            name: 'ferry_progress',
            arguments: { count: COUNT, intervalMs: 5 },
            _meta: { progressToken: `k8s-kill-${round}` },
          },
        },
        {
          onEvent: (event, { connections }) => {
            if (killed || event.message.params?.progress !== killAt) return
            victim = connections[0]!.upstream
            killedAt = performance.now()
            killed = kill(victim)
          },
        }
      )
      expect(killed, `round ${round}: the kill point was never reached`).toBeDefined()
      await killed

      const check = checkProgressStream(call, COUNT)
      expect(check.missing, `round ${round}: missing progress`).toEqual([])
      expect(check.duplicated, `round ${round}: duplicated progress`).toEqual([])
      expect(check.inOrder).toBe(true)
      expect(check.seqsContiguous, `round ${round}: event ids not contiguous`).toBe(true)
      expect(check.responses).toBe(1)
      expect(call.response.result?.content).toEqual([{ type: 'text', text: `done ${COUNT}` }])

      const [first, ...resumes] = call.connections
      expect(first!.upstream).toBe(victim)
      expect(first!.ending).not.toBe('complete')
      const resumed = resumes.find((connection) => connection.firstEventAt !== undefined)!
      expect(resumed, `round ${round}: no resumed stream carried events`).toBeDefined()
      expect(resumed.upstream).not.toBe(victim)
      latencies.push(resumed.firstEventAt! - killedAt)
    }
    console.log(
      `[kubernetes chaos] ${KILLS} replica kills mid-stream (${COUNT} progress events at 5 ms): ` +
        `resume latency p50 ${percentile(latencies, 50).toFixed(1)} ms, ` +
        `p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms; ` +
        `messages lost 0, duplicated 0; still one Job: ${cluster.orphans().jobs.length === 1}`
    )
    // Still the same single Job: no kill started or lost a session workload.
    expect(cluster.orphans().jobs).toHaveLength(1)
    const still = await session.request('tools/call', {
      name: 'ferry_echo',
      arguments: { text: 'ok' },
    })
    expect(textOf(still.result)).toBe('ok')
    expect((await session.close()).status).toBe(200)
  }, 120_000)
})
