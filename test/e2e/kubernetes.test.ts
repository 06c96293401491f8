/**
 * @module test/e2e/kubernetes
 *
 * The Kubernetes runtime end to end (issue #3): the MCP SDK client → a real bridge (`serveBridge`
 * with a `KubernetesRuntime`) → a cluster → the sidecar in the session's pod → the conformance
 * fixture server. The cluster is the tier `FERRY_K8S_TIER` picks (`test/helpers/kubernetes.ts`):
 *
 * - `sim` (default, `npm test`): the simulated cluster (fake API server, Job controller, kubelet
 *   simulator), with fault injection;
 * - `real` (`npm run test:k8s-real`): kube-apiserver + kube-controller-manager + etcd v1.20.2 with
 *   the RBAC of `manifests/base` applied; the bridge authenticates as the RoleBinding's
 *   ServiceAccount (least privilege), the kubelet simulator as admin binds pods through
 *   `pods/binding` and reports through `pods/status`. Tests that need faults injected into the
 *   API server are skipped there; what 1.20.2 lacks (Pod Security admission, `podFailurePolicy`,
 *   `batch.kubernetes.io/*` labels) is checked as absent, not faked.
 *
 * - sessions work in both sidecar deliveries, and the session secret shows up nowhere but in the
 *   runtime's hands (not in the Job, the pod, any log, or the server's environment);
 * - every way a start can fail ends in a JSON-RPC error on `initialize` that says why, and the
 *   Job deleted; API refusals are retried where safe and otherwise named; never a hang;
 * - DELETE, the sidecar's idle timeout and the server's exit all end with the Job gone
 *   (Background propagation), through `stop()` or the sweep, which every replica may run at once;
 * - the official conformance suite passes through the Kubernetes runtime.
 *
 * After every test the cluster must hold no Job, pod or pod process.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { Writable } from 'node:stream'
import { dirname, join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ApiException, BatchV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node'
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js'
import { buildSessionJob } from '@ferry/bridge'
import {
  CatalogSchema,
  type KubernetesServerConfig,
  createLogger,
  sidecarVerifier,
} from '@ferry/shared'
import type { SimulatedCluster } from '../k8s/cluster.ts'
import type { Job, Pod } from '../k8s/types.ts'
import {
  type KubernetesBridge,
  type KubernetesBridgeOptions,
  type TestCluster,
  cleanCluster,
  hasCondition,
  jobsIn,
  kubernetesRuntime,
  kubernetesServer,
  kubernetesTier,
  percentile,
  podProcesses,
  podsIn,
  settledOrphans,
  settledPodProcesses,
  sidecarBundle,
  startKubernetesBridge,
  startTestCluster,
} from '../helpers/kubernetes.ts'
import { SdkClients, initializeRequest, post, postHeaders, textOf } from '../helpers/mcp.ts'
import { killTrees } from '../helpers/processes.ts'

const require = createRequire(import.meta.url)

const tier = kubernetesTier()
/** Tests that inject faults into the (fake) API server: the real one takes no orders. */
const simOnly = it.skipIf(tier === 'real')
/** Pod IPs of this file's cluster (each test file, and each tier, uses its own range). */
const IP_PREFIX = tier === 'real' ? '127.0.44.' : '127.0.41.'
let cluster: TestCluster
const clients = new SdkClients()
const bridges: KubernetesBridge[] = []

beforeAll(async () => {
  cluster = await startTestCluster({
    namespace: 'ferry-e2e',
    kubelet: { ipPrefix: IP_PREFIX, stopGraceMs: 500, maxGracePeriodMs: 3000 },
  })
  if (cluster.real) {
    const { plane, applied, user } = cluster.real
    console.log(
      `${cluster.description}: up in ${plane.timings.totalMs} ms at ${plane.server}; ` +
        `applied ${applied.join(', ')}; the bridge is ${user}`
    )
  }
}, 120_000)
afterEach(async () => {
  await clients.closeAll()
  for (const bridge of bridges.splice(0)) await bridge.close()
  const left = await settledOrphans(cluster)
  // The MCP servers too (they run in their own process group, under the pod's sidecar).
  const stray = await settledPodProcesses(IP_PREFIX)
  await cleanCluster(cluster)
  killTrees(podProcesses(IP_PREFIX).map((line) => Number(line.split(' ')[0])))
  cluster.clearRequests()
  expect(left, 'the test left Jobs, pods or pod processes behind').toEqual({
    jobs: [],
    pods: [],
    processes: [],
  })
  expect(stray, 'processes of ended pods still run').toEqual([])
})
afterAll(() => cluster?.stop())

const server = (overrides: Record<string, unknown> = {}) =>
  kubernetesServer(cluster.namespace, overrides)

const bridgeFor = async (
  servers: Record<string, Record<string, unknown>>,
  options: Omit<KubernetesBridgeOptions, 'servers'> = {}
) => {
  const bridge = await startKubernetesBridge(cluster, { servers, ...options })
  bridges.push(bridge)
  return bridge
}

/** The simulated cluster, for tests that only run on the `sim` tier (`simOnly`). */
const sim = (): SimulatedCluster => {
  if (!cluster.sim) throw new Error('this test needs the simulated cluster (FERRY_K8S_TIER=sim)')
  return cluster.sim
}

/** Faults aimed at the bridge's own API calls (the kubelet simulator is spared). */
const failNext = (
  verb: Parameters<SimulatedCluster['api']['failNext']>[0],
  resource: Parameters<SimulatedCluster['api']['failNext']>[1],
  status: number,
  times = 1,
  options: { retryAfterSeconds?: number } = {}
) => sim().api.failNext(verb, resource, status, times, { user: cluster.user, ...options })

/** Requests the bridge made (not the kubelet's); on `real`, from the apiserver's audit log. */
const bridgeRequests = () => cluster.requests()

/** Connecting must fail: returns the error (an McpError from the `initialize` answer). */
const connectFails = async (url: string): Promise<McpError> => {
  const error = await clients.connect(url).then(
    () => undefined,
    (caught: unknown) => caught
  )
  expect(error, 'the session started').toBeInstanceOf(McpError)
  return error as McpError
}

/** Waits for `check` to return something truthy (bounded). */
const waitFor = async <T>(
  what: string,
  check: () => T | false | undefined,
  timeoutMs = 15_000
): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value) return value
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** The one session Job (after waiting for the `real` tier's informers to catch up). */
const sessionJob = async (): Promise<Job> => {
  await cluster.synced()
  const jobs = jobsIn(cluster)
  expect(jobs.map((j) => j.metadata?.name)).toHaveLength(1)
  return jobs[0]!
}

const podOf = (jobName: string): Pod | undefined =>
  podsIn(cluster).find((pod) => pod.metadata?.labels?.['job-name'] === jobName)

/** The bridge deleted `job` with `propagationPolicy=Background` (so no pod is orphaned). */
const expectBackgroundDelete = async (job: string) => {
  // DELETE answers before the runtime's own delete call, so wait for it.
  const deletes = await waitFor(`a DELETE of Job ${job}`, () => {
    const found = bridgeRequests().filter(
      (r) => r.method === 'DELETE' && r.resource === 'jobs' && r.name === job
    )
    return found.length > 0 && found
  })
  for (const request of deletes) expect(request.query.propagationPolicy).toBe('Background')
}

/** Waits until the Job and its pod are gone from the cluster. */
const expectGone = async (job: string) => {
  await waitFor(`Job ${job} and its pod to be deleted`, () => {
    const jobs = jobsIn(cluster).map((j) => j.metadata?.name)
    return !jobs.includes(job) && podOf(job) === undefined
  })
}

describe('a session on the Kubernetes runtime', () => {
  it('works end to end: tools, progress, DELETE removes the Job (Background) and its pod', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    const { client, transport } = await clients.connect(bridge.url('fixture'))
    expect(transport.sessionId).toBeTruthy()

    const job = await sessionJob()
    const name = job.metadata!.name!
    expect(job.metadata!.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'ferry-bridge',
      'ferry.dev/server': 'fixture',
      'ferry.dev/session': name,
    })
    const pod = podOf(name)!
    expect(pod.status?.podIP?.startsWith(IP_PREFIX)).toBe(true)
    expect(pod.spec?.nodeName).toBe(cluster.kubelet.nodeName)
    expect(job.spec?.ttlSecondsAfterFinished).toBeGreaterThan(0)
    if (tier === 'real') {
      // What kube-apiserver 1.20.2 does not have is dropped or absent, not faked: the Job keeps
      // no podFailurePolicy (1.25+), so a failed pod fails the Job through backoffLimit 0, and
      // the job controller sets only the `job-name`/`controller-uid` pod labels, not the
      // `batch.kubernetes.io/*` ones (1.27+). ttlSecondsAfterFinished is kept (alpha gate on).
      expect(job.spec?.podFailurePolicy).toBeUndefined()
      expect(job.spec?.backoffLimit).toBe(0)
      expect(pod.metadata?.labels?.['job-name']).toBe(name)
      expect(Object.keys(pod.metadata?.labels ?? {}).filter((l) => l.startsWith('batch.'))).toEqual(
        []
      )
    } else {
      expect(job.spec?.podFailurePolicy?.rules).toHaveLength(2)
    }
    // The sidecar and the MCP server it started, both running "in" the pod.
    expect(podProcesses(IP_PREFIX).length).toBeGreaterThanOrEqual(2)

    const tools = await client.listTools()
    expect(tools.tools.map((t) => t.name)).toContain('ferry_echo')
    expect(
      textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'over k8s' } }))
    ).toBe('over k8s')
    const progress: number[] = []
    const result = await client.callTool(
      { name: 'ferry_progress', arguments: { count: 3, intervalMs: 20 } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) }
    )
    expect(textOf(result)).toBe('done 3')
    expect(progress).toEqual([1, 2, 3])

    await transport.terminateSession()
    await expectBackgroundDelete(name)
    await expectGone(name)
    // The session is over: its id is refused now.
    await expect(
      client.callTool({ name: 'ferry_echo', arguments: { text: 'x' } })
    ).rejects.toThrow()
  })

  it('keeps the session secret out of the Job, the pod, every log and the server environment', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    const { client, transport } = await clients.connect(bridge.url('fixture'))
    const secret = bridge.runtime.secrets.at(-1)!
    expect(secret).toBeTruthy()
    const job = await sessionJob()
    const pod = podOf(job.metadata!.name!)!
    const verifier = createHash('sha256').update(secret).digest('base64url')
    expect(verifier).toBe(await sidecarVerifier(secret))

    // Only the verifier travels, in the Job (and so the pod) spec.
    for (const object of [job, pod]) expect(JSON.stringify(object)).not.toContain(secret)
    const env = pod.spec!.containers[0]!.env ?? []
    expect(env.filter((e) => e.name.startsWith('FERRY_SIDECAR_'))).toEqual([
      { name: 'FERRY_SIDECAR_VERIFIER', value: verifier },
    ])

    // The server sees no FERRY_SIDECAR_* variable at all.
    const names = JSON.parse(
      textOf(await client.callTool({ name: 'ferry_env', arguments: {} }))
    ) as string[]
    expect(names.filter((n) => n.startsWith('FERRY_SIDECAR_'))).toEqual([])
    expect(names).toContain('POD_IP')

    // Logs: the pod's (sidecar and server) and the bridge's, at debug level.
    const podLog = cluster.kubelet.logs(cluster.namespace, pod.metadata!.name!) ?? ''
    expect(podLog).toContain('sidecar listening')
    expect(podLog).not.toContain(secret)
    expect(bridge.logs().some((line) => line.msg === 'session started')).toBe(true)
    expect(bridge.logText()).not.toContain(secret)

    await transport.terminateSession()
    await expectGone(job.metadata!.name!)
  })

  it('works with the inject delivery (an init container copies the sidecar in)', async () => {
    const bridge = await bridgeFor({
      injected: server({
        delivery: 'inject',
        image: 'docker.io/library/node:24-slim',
        sidecarImage: 'ferry.test/sidecar:dev',
      }),
    })
    const { client, transport } = await clients.connect(bridge.url('injected'))
    const job = await sessionJob()
    const spec = job.spec!.template.spec!
    expect(spec.initContainers?.map((c) => c.name)).toEqual(['ferry-inject'])
    expect(spec.volumes?.map((v) => v.name)).toEqual(['ferry-tmp', 'ferry-sidecar'])
    expect(spec.containers[0]!.image).toBe('docker.io/library/node:24-slim')
    expect(
      textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'injected' } }))
    ).toBe('injected')
    await transport.terminateSession()
    await expectBackgroundDelete(job.metadata!.name!)
    await expectGone(job.metadata!.name!)
  })

  it('adds what a podTemplatePatch asks for (a second container, a node selector, an env var)', async () => {
    const bridge = await bridgeFor({
      patched: server({
        podTemplatePatch: {
          spec: {
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            containers: [
              { name: 'mcp', env: [{ name: 'FROM_PATCH', value: 'yes' }] },
              { name: 'helper', image: 'busybox:1.36', command: ['sleep', 'infinity'] },
            ],
          },
        },
      }),
    })
    const { client, transport } = await clients.connect(bridge.url('patched'))
    const spec = (await sessionJob()).spec!.template.spec!
    expect(spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' })
    expect(spec.containers.map((c) => c.name)).toEqual(['mcp', 'helper'])
    const names = JSON.parse(
      textOf(await client.callTool({ name: 'ferry_env', arguments: {} }))
    ) as string[]
    expect(names).toContain('FROM_PATCH')
    await transport.terminateSession()
  })

  it('runs several sessions at once, each in its own Job and pod', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    const sessions = await Promise.all(
      Array.from({ length: 4 }, () => clients.connect(bridge.url('fixture')))
    )
    await cluster.synced()
    const jobs = jobsIn(cluster)
    expect(jobs).toHaveLength(4)
    const ips = new Set(jobs.map((j) => podOf(j.metadata!.name!)?.status?.podIP))
    expect(ips.size).toBe(4)
    const echoes = await Promise.all(
      sessions.map(({ client }, i) =>
        client.callTool({ name: 'ferry_echo', arguments: { text: `s${i}` } })
      )
    )
    expect(echoes.map(textOf)).toEqual(['s0', 's1', 's2', 's3'])
    await Promise.all(sessions.map(({ transport }) => transport.terminateSession()))
  })
})

describe('a start that fails: a clear error on initialize, and the Job deleted', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      'an image that cannot be pulled',
      { image: 'ferry.test/fail:image-pull' },
      /the image ferry\.test\/fail:image-pull cannot be pulled \((ErrImagePull|ImagePullBackOff)/,
    ],
    [
      'an invalid image name',
      { image: 'Ferry.Test/NOT VALID' },
      /cannot be pulled \(InvalidImageName: .*invalid reference format/,
    ],
    [
      'a pod no node can take (past the start timeout)',
      { image: 'ferry.test/fail:unschedulable', startTimeout: '1500ms' },
      /the pod could not be scheduled: 0\/1 nodes are available: 1 Insufficient cpu\./,
    ],
    [
      'a container that exits before it is ready',
      { image: 'ferry.test/fail:crash' },
      /the container mcp exited with code 1 \(Error\) before it was ready/,
    ],
    [
      'a container OOM-killed before it is ready',
      { image: 'ferry.test/fail:oom' },
      /the container mcp was OOM-killed \(exit code 137\) before it was ready/,
    ],
    [
      'a missing Secret',
      { envFrom: [{ secretRef: { name: 'no-such-secret' } }] },
      /cannot be created \(CreateContainerConfigError: secret "no-such-secret" not found\)/,
    ],
    [
      'a missing ConfigMap',
      { envFrom: [{ configMapRef: { name: 'no-such-config' } }] },
      /cannot be created \(CreateContainerConfigError: configmap "no-such-config" not found\)/,
    ],
    [
      'a command that cannot be started',
      { nodePath: '/nonexistent/bin/node' },
      /cannot be created \(RunContainerError: .*executable file not found/,
    ],
    [
      'a pod still starting at the start timeout',
      {
        startTimeout: '1s',
        annotations: { 'sim.ferry.dev/fail': 'slow-start', 'sim.ferry.dev/start-delay-ms': '8000' },
      },
      /the session did not become ready within 1000 ms/,
    ],
  ]

  it.each(cases)('%s', async (_what, overrides, reason) => {
    // A start timeout far longer than any failure should take: failing fast is the point.
    const bridge = await bridgeFor({ broken: server({ startTimeout: '30s', ...overrides }) })
    const started = Date.now()
    const error = await connectFails(bridge.url('broken'))
    expect(error.message).toMatch(/Session start failed: /)
    expect(error.message).toMatch(reason)
    expect(Date.now() - started).toBeLessThan(25_000)
    const created = bridgeRequests().filter((r) => r.verb === 'create' && r.resource === 'jobs')
    expect(created).toHaveLength(1)
    await expectBackgroundDelete(created[0]!.name!)
  })
})

describe('a client that goes away', () => {
  it('mid-start: the start is abandoned and its Job deleted', async () => {
    const bridge = await bridgeFor({
      slow: server({
        startTimeout: '30s',
        annotations: {
          'sim.ferry.dev/fail': 'slow-start',
          'sim.ferry.dev/start-delay-ms': '20000',
        },
      }),
    })
    const abort = new AbortController()
    const answer = post(bridge.url('slow'), initializeRequest(), postHeaders(), abort.signal)
    const name = await waitFor('the session Job', () => jobsIn(cluster)[0]?.metadata?.name)
    abort.abort()
    await expect(answer).rejects.toThrow()
    await expectBackgroundDelete(name)
    await expectGone(name)
  })
})

describe('Kubernetes API refusals', () => {
  // The refusals marked `simOnly` are injected into the fake API server (`failNext`, hooks,
  // delays); a real kube-apiserver cannot be told to fail a given request, so they run on the
  // `sim` tier only. The real tier still gets genuine refusals: RBAC (403), validation (422).
  simOnly('409: retries with a new name, and the session starts', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    failNext('create', 'jobs', 409)
    const { client, transport } = await clients.connect(bridge.url('fixture'))
    const job = await sessionJob()
    const session = job.metadata!.labels!['ferry.dev/session']!
    expect(job.metadata!.name).toBe(`${session}-1`)
    const creates = bridgeRequests().filter((r) => r.verb === 'create' && r.resource === 'jobs')
    expect(creates.map((r) => [r.name, r.status])).toEqual([
      [session, 409],
      [`${session}-1`, 201],
    ])
    expect(
      textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'renamed' } }))
    ).toBe('renamed')
    await transport.terminateSession()
    await expectBackgroundDelete(`${session}-1`)
    await expectGone(`${session}-1`)
  })

  simOnly(
    '409 from a Job that already holds the name: the new Job’s own pod is the one watched',
    async () => {
      const bridge = await bridgeFor({ fixture: server() })
      const config = CatalogSchema.parse({
        servers: { fixture: server({ image: 'ferry.test/fail:image-pull' }) },
      }).servers.fixture as KubernetesServerConfig
      let squatter: string | undefined
      // A Job of the same session already exists (say, an earlier create whose answer was lost),
      // and its pod will never run.
      const remove = sim().api.addHook((request) => {
        if (squatter || request.verb !== 'create' || request.resource !== 'jobs') return
        if (request.user !== cluster.user) return
        squatter = request.name!
        sim().api.createObject(
          'jobs',
          cluster.namespace,
          buildSessionJob({
            jobName: squatter,
            sessionName: squatter,
            serverName: 'fixture',
            server: config,
            verifier: 'x',
            now: new Date(),
            sidecarPath: sidecarBundle,
          }) as unknown as Job
        )
        return { status: 409 }
      })
      try {
        const { client, transport } = await clients.connect(bridge.url('fixture'))
        expect(
          textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'mine' } }))
        ).toBe('mine')
        await transport.terminateSession()
        await expectGone(`${squatter}-1`)
      } finally {
        remove()
      }
      await bridge.runtime.stop({
        sessionName: squatter!,
        ref: { namespace: cluster.namespace, job: squatter! },
      })
      await expectGone(squatter!)
    }
  )

  simOnly('429 twice: backs off (Retry-After) and the session starts', async () => {
    const bridge = await bridgeFor({ fixture: server({ startTimeout: '15s' }) })
    failNext('create', 'jobs', 429, 2, { retryAfterSeconds: 1 })
    const started = Date.now()
    const { transport } = await clients.connect(bridge.url('fixture'))
    const creates = bridgeRequests().filter((r) => r.verb === 'create' && r.resource === 'jobs')
    expect(creates.map((r) => r.status)).toEqual([429, 429, 201])
    // Retry-After: 1 was honoured twice.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000)
    expect(new Set(creates.map((r) => r.name)).size).toBe(1)
    await transport.terminateSession()
  })

  simOnly('5xx until the start timeout: retried with backoff, then reported', async () => {
    const bridge = await bridgeFor({ fixture: server({ startTimeout: '2s' }) })
    failNext('create', 'jobs', 500, 1_000)
    const error = await connectFails(bridge.url('fixture'))
    expect(error.message).toMatch(
      /could not create the session's Job in namespace ferry-e2e: HTTP 500 Internal error occurred: injected fault/
    )
    const creates = bridgeRequests().filter((r) => r.verb === 'create' && r.resource === 'jobs')
    expect(creates.length).toBeGreaterThanOrEqual(3)
    expect(creates.every((r) => r.status === 500)).toBe(true)
  })

  simOnly('a transient 503 while watching the pod is retried', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    failNext('list', 'pods', 503, 1, { retryAfterSeconds: 0 })
    failNext('watch', 'pods', 503, 2, { retryAfterSeconds: 0 })
    const { transport } = await clients.connect(bridge.url('fixture'))
    await transport.terminateSession()
  })

  simOnly('403 on create: the error names the missing permission', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    failNext('create', 'jobs', 403)
    const error = await connectFails(bridge.url('fixture'))
    expect(error.message).toMatch(
      /the bridge is not allowed to create the session's Job in namespace ferry-e2e: .*User "ferry-bridge" cannot create resource "jobs" in API group "batch" in the namespace "ferry-e2e"/
    )
    expect(jobsIn(cluster)).toEqual([])
  })

  it.runIf(tier === 'real')(
    '403 from RBAC: a namespace the Role does not cover is refused, and the error says so',
    async () => {
      // The Role from manifests/ grants nothing outside the session namespace.
      const bridge = await bridgeFor({ elsewhere: kubernetesServer('default') })
      const error = await connectFails(bridge.url('elsewhere'))
      expect(error.message).toMatch(
        /the bridge is not allowed to create the session's Job in namespace default: .*User "system:serviceaccount:ferry:ferry-bridge" cannot create resource "jobs" in API group "batch" in the namespace "default"/
      )
      const refused = await waitFor('the refused create in the audit log', () =>
        bridgeRequests().find(
          (r) => r.verb === 'create' && r.resource === 'jobs' && r.namespace === 'default'
        )
      )
      expect(refused.status).toBe(403)
    }
  )

  it.runIf(tier === 'real')(
    'the bridge has what the Role from manifests/ grants, and nothing more',
    async () => {
      const core = cluster.kubeconfig.makeApiClient(CoreV1Api)
      const batch = cluster.kubeconfig.makeApiClient(BatchV1Api)
      const namespace = cluster.namespace
      const status = (call: Promise<unknown>) =>
        call.then(
          () => 200,
          (error: unknown) => {
            if (error instanceof ApiException) return error.code
            throw error
          }
        )
      // Granted: what the runtime uses.
      expect(await status(batch.listNamespacedJob({ namespace }))).toBe(200)
      expect(await status(core.listNamespacedPod({ namespace }))).toBe(200)
      expect(await status(core.listNamespacedEvent({ namespace }))).toBe(200)
      // Refused: Secrets, writes to pods and ConfigMaps, and anything outside the namespace.
      const refused = {
        'list secrets': await status(core.listNamespacedSecret({ namespace })),
        'delete a pod': await status(core.deleteNamespacedPod({ name: 'any', namespace })),
        'create a configmap': await status(
          core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'x' } } })
        ),
        'list jobs in default': await status(batch.listNamespacedJob({ namespace: 'default' })),
        'list namespaces': await status(core.listNamespace()),
      }
      expect(refused).toEqual({
        'list secrets': 403,
        'delete a pod': 403,
        'create a configmap': 403,
        'list jobs in default': 403,
        'list namespaces': 403,
      })
    }
  )

  it.skipIf(tier === 'real').each(['list', 'watch'] as const)(
    '403 on %s pods: the error names the permission, and the Job is deleted',
    async (verb) => {
      const bridge = await bridgeFor({ fixture: server({ startTimeout: '30s' }) })
      failNext(verb, 'pods', 403, 1_000)
      const started = Date.now()
      const error = await connectFails(bridge.url('fixture'))
      expect(error.message).toMatch(
        /the bridge is not allowed to watch the session's pod in namespace ferry-e2e: /
      )
      // A refused list carries the API server's words; a refused watch only its status line.
      expect(error.message).toMatch(
        verb === 'list'
          ? /User "ferry-bridge" cannot list resource "pods" in API group "" in the namespace "ferry-e2e"/
          : /HTTP 403 Forbidden/
      )
      // Refused for good: no waiting for the start timeout.
      expect(error.message).not.toMatch(/did not become ready/)
      expect(Date.now() - started).toBeLessThan(25_000)
      const created = bridgeRequests().find((r) => r.verb === 'create' && r.resource === 'jobs')
      await expectBackgroundDelete(created!.name!)
    }
  )

  // kube-apiserver 1.20 has no Pod Security admission (1.22+): the namespace's
  // `pod-security.kubernetes.io/enforce: restricted` label is inert there, so only the fake API
  // server (and a modern cluster) refuses such a pod. Sim only.
  simOnly('403 from Pod Security admission: the error says which rule the pod breaks', async () => {
    const bridge = await bridgeFor({
      hostpath: server({
        podTemplatePatch: { spec: { volumes: [{ name: 'host', hostPath: { path: '/etc' } }] } },
      }),
    })
    const error = await connectFails(bridge.url('hostpath'))
    expect(error.message).toMatch(
      /the pod breaks the namespace's Pod Security level: .*violates PodSecurity "restricted:latest": hostPath volumes \(volume "host"\)/
    )
    expect(jobsIn(cluster)).toEqual([])
  })

  it('422 from a bad podTemplatePatch: the error shows the invalid field', async () => {
    const bridge = await bridgeFor({
      invalid: server({
        podTemplatePatch: { spec: { containers: [{ name: 'Bad_Name', image: 'busybox:1.36' }] } },
      }),
    })
    const error = await connectFails(bridge.url('invalid'))
    expect(error.message).toMatch(
      /the Job was refused as invalid: Job\.batch ".*" is invalid: spec\.template\.spec\.containers\[1\]\.name: Invalid value: "Bad_Name"/
    )
    await cluster.synced()
    expect(jobsIn(cluster)).toEqual([])
  })

  simOnly('422 (injected): the error shows the invalid field, with no retry', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    failNext('create', 'jobs', 422)
    const error = await connectFails(bridge.url('fixture'))
    expect(error.message).toMatch(/the Job was refused as invalid: .*metadata\.name: Invalid value/)
    expect(bridgeRequests().filter((r) => r.verb === 'create')).toHaveLength(1)
  })

  simOnly(
    'a create answered only after the start timeout: no hang, and the late Job is deleted',
    async () => {
      const bridge = await bridgeFor({ fixture: server({ startTimeout: '1s' }) })
      sim().api.delayNext('create', 'jobs', 6_000, 1, { user: cluster.user })
      const started = Date.now()
      const error = await connectFails(bridge.url('fixture'))
      expect(error.message).toMatch(/did not become ready within 1000 ms/)
      // Answered before the API server answered the create.
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(bridgeRequests().some((r) => r.verb === 'create' && r.status === 201)).toBe(false)
      // The create still lands on the server; the runtime removes what it made.
      await waitFor('the late create', () =>
        bridgeRequests().some((r) => r.verb === 'create' && r.status === 201)
      )
      const name = bridgeRequests().find((r) => r.verb === 'create')!.name!
      await waitFor('the late Job to be deleted', () =>
        bridgeRequests().some((r) => r.method === 'DELETE' && r.name === name)
      )
      await expectBackgroundDelete(name)
    }
  )

  it('an unreachable API server: retried until the start timeout, then reported', async () => {
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const { port } = closed.address() as { port: number }
    await new Promise<void>((resolve) => closed.close(() => resolve()))
    const dead = new KubeConfig()
    dead.loadFromClusterAndUser(
      { name: 'dead', server: `http://127.0.0.1:${port}`, skipTLSVerify: true },
      { name: 'u', token: 't' }
    )
    const bridge = await bridgeFor(
      { fixture: server({ startTimeout: '1500ms' }) },
      { runtime: { kubeConfig: dead } }
    )
    const error = await connectFails(bridge.url('fixture'))
    expect(error.message).toMatch(/cannot reach the Kubernetes API: ECONNREFUSED/)
  })
})

describe('the end of a session', () => {
  it('stop() deletes with Background propagation and is idempotent', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    const { transport } = await clients.connect(bridge.url('fixture'))
    const name = (await sessionJob()).metadata!.name!
    const ref = { sessionName: name, ref: { namespace: cluster.namespace, job: name } }
    await bridge.runtime.stop(ref)
    await bridge.runtime.stop(ref)
    await expectBackgroundDelete(name)
    await expectGone(name)
    expect(bridge.runtime.activeSessions()).toBe(0)
    await transport.terminateSession().catch(() => undefined)
  })

  it('the sidecar’s idle timeout ends the session, and the bridge that hears it removes the Job', async () => {
    const bridge = await bridgeFor({ idle: server({ idleTimeout: '1s' }) })
    const { client } = await clients.connect(bridge.url('idle'))
    expect(textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'hi' } }))).toBe(
      'hi'
    )
    const name = (await sessionJob()).metadata!.name!
    // The bridge still holds its pooled connection when the sidecar says the session is over.
    await expectBackgroundDelete(name)
    await expectGone(name)
    expect(bridge.runtime.activeSessions()).toBe(0)
    await expect(
      client.callTool({ name: 'ferry_echo', arguments: { text: 'x' } })
    ).rejects.toThrow()
  })

  it('the sidecar’s idle timeout completes the Job, and a sweep removes it when no bridge heard it', async () => {
    // The client goes away and the pooled connection closes before the sidecar idles out,
    // so no bridge hears the end.
    const bridge = await bridgeFor(
      { idle: server({ idleTimeout: '1s' }) },
      { bridge: { connection: { idleClose: '200ms' } } }
    )
    const { client } = await clients.connect(bridge.url('idle'))
    expect(textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'hi' } }))).toBe(
      'hi'
    )
    const name = (await sessionJob()).metadata!.name!
    await client.close()
    await waitFor('the Job to complete', () =>
      hasCondition(
        jobsIn(cluster).find((j) => j.metadata?.name === name),
        'Complete'
      )
    )
    expect(podOf(name)?.status?.phase).toBe('Succeeded')
    // A sweep right away leaves a just-finished Job to whoever ends it; later it is over.
    expect(await bridge.runtime.sweep()).toEqual([])
    expect(await bridge.runtime.sweep(Date.now() + 60_000)).toEqual([name])
    await expectBackgroundDelete(name)
    await expectGone(name)
  })

  it('the server’s exit fails the pending call and the Job; the sweep removes it', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    const { client } = await clients.connect(bridge.url('fixture'))
    const name = (await sessionJob()).metadata!.name!
    const pending = client.callTool({ name: 'ferry_sleep', arguments: { ms: 120_000 } })
    const exit = client.callTool({ name: 'ferry_exit', arguments: { code: 3, delayMs: 200 } })
    for (const call of [pending, exit]) {
      const error = await call.then(
        () => undefined,
        (caught: unknown) => caught
      )
      expect(error).toBeInstanceOf(McpError)
      expect((error as McpError).code).not.toBe(ErrorCode.RequestTimeout)
    }
    const failed = await waitFor('the Job to fail', () => {
      const job = jobsIn(cluster).find((j) => j.metadata?.name === name)
      return hasCondition(job, 'Failed') && job
    })
    // 1.20 drops podFailurePolicy (1.25+): there the Job fails through backoffLimit 0.
    expect(failed.status?.conditions?.find((c) => c.type === 'Failed')?.reason).toBe(
      tier === 'real' ? 'BackoffLimitExceeded' : 'PodFailurePolicy'
    )
    expect(podOf(name)?.status?.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(3)
    // A crashed session's Job stays for inspection until the sweep (or its TTL) removes it.
    expect(await bridge.runtime.sweep(Date.now() + 60_000)).toEqual([name])
    await expectBackgroundDelete(name)
    await expectGone(name)
  })

  it('a start whose bridge died is swept after its deadline, by two replicas at once', async () => {
    const config = CatalogSchema.parse({
      servers: {
        fixture: server({ image: 'ferry.test/fail:unschedulable', startTimeout: '5s' }),
      },
    }).servers.fixture as KubernetesServerConfig
    const name = 'ferry-stuck0123456789abcd'
    const batch = cluster.kubeconfig.makeApiClient(BatchV1Api)
    await batch.createNamespacedJob({
      namespace: cluster.namespace,
      body: buildSessionJob({
        jobName: name,
        sessionName: name,
        serverName: 'fixture',
        server: config,
        verifier: await sidecarVerifier('whatever'),
        // Started a minute ago: its start deadline (+5 s) is long past.
        now: new Date(Date.now() - 60_000),
        sidecarPath: sidecarBundle,
      }),
    })
    await waitFor('the pod to be reported unschedulable', () =>
      podOf(name)?.status?.conditions?.some(
        (c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable'
      )
    )
    const replicas = [kubernetesRuntime(cluster), kubernetesRuntime(cluster)]
    const swept = await Promise.all(replicas.map((runtime) => runtime.sweep()))
    expect(new Set(swept.flat())).toEqual(new Set([name]))
    await expectBackgroundDelete(name)
    await expectGone(name)
    await Promise.all(replicas.map((runtime) => runtime.close()))
  })

  it('counts a session as active until its Job is over, whichever replica swept it', async () => {
    const bridge = await bridgeFor(
      { idle: server({ idleTimeout: '1s' }) },
      { bridge: { connection: { idleClose: '200ms' } } }
    )
    const { client } = await clients.connect(bridge.url('idle'))
    expect(bridge.runtime.activeSessions()).toBe(1)
    await client.close()
    const name = (await sessionJob()).metadata!.name!
    await waitFor('the Job to complete', () =>
      hasCondition(
        jobsIn(cluster).find((j) => j.metadata?.name === name),
        'Complete'
      )
    )
    const other = kubernetesRuntime(cluster)
    expect(await other.sweep(Date.now() + 60_000)).toEqual([name])
    await other.close()
    await expectGone(name)
    // This replica's own sweep finds nothing to delete, and stops counting the session.
    expect(await bridge.runtime.sweep(Date.now() + 60_000)).toEqual([])
    expect(bridge.runtime.activeSessions()).toBe(0)
  })

  it('the periodic sweep runs on its own and reports a refused listing', async () => {
    const lines: string[] = []
    const runtime = kubernetesRuntime(cluster, {
      sweepIntervalMs: 100,
      // On the real tier the refusal is genuine: the Role does not cover namespace `default`, so
      // each sweep lists the session namespace (200) and is then refused (403).
      ...(tier === 'real' ? { namespaces: [cluster.namespace, 'default'] } : {}),
      logger: createLogger({
        name: 'kubernetes',
        level: 'warn',
        destination: new Writable({
          write(chunk: Buffer, _encoding, callback) {
            lines.push(chunk.toString())
            callback()
          },
        }),
      }),
    })
    if (tier === 'sim') failNext('list', 'jobs', 403, 1)
    try {
      await waitFor('a sweep', () =>
        bridgeRequests().some((r) => r.verb === 'list' && r.resource === 'jobs' && r.status === 200)
      )
      const warnings = () => lines.map((line) => JSON.parse(line) as { msg: string; error: string })
      await waitFor('a refused sweep', () =>
        warnings().some((warning) => warning.msg === 'the sweep failed')
      )
      expect(warnings()).toContainEqual(
        expect.objectContaining({
          msg: 'the sweep failed',
          error: expect.stringContaining(
            tier === 'real'
              ? `User "${cluster.user}" cannot list resource "jobs" in API group "batch" in the namespace "default"`
              : 'cannot list resource "jobs"'
          ),
        })
      )
    } finally {
      await runtime.close()
    }
  })

  it('never sweeps a live session, even long past its start deadline', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    const { client, transport } = await clients.connect(bridge.url('fixture'))
    expect(await bridge.runtime.sweep(Date.now() + 3_600_000)).toEqual([])
    expect(
      textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'alive' } }))
    ).toBe('alive')
    await transport.terminateSession()
  })
})

describe('measurements and conformance', () => {
  it('session start time (create → ready → initialize answered) on this tier’s cluster', async () => {
    const bridge = await bridgeFor({ fixture: server() })
    const client: number[] = []
    for (let i = 0; i < 10; i++) {
      const started = performance.now()
      const { transport } = await clients.connect(bridge.url('fixture'))
      client.push(performance.now() - started)
      await transport.terminateSession()
    }
    const lines = bridge.logs().filter((line) => line.msg === 'session started')
    expect(lines).toHaveLength(10)
    const total = lines.map((line) => Number(line.ms))
    const ready = lines.map((line) => Number(line.readyMs))
    const fmt = (values: number[]) =>
      `p50 ${Math.round(percentile(values, 50))} ms, p99 ${Math.round(percentile(values, 99))} ms`
    console.log(
      `kubernetes session start over ${total.length} sessions (${cluster.description}): create→initialize answered ${fmt(total)}; create→ready ${fmt(ready)}; client connect() ${fmt(client)}`
    )
    expect(total.every((ms) => ms > 0)).toBe(true)
  }, 60_000)

  it('passes the MCP conformance suite (0.1.16, --suite all) through the Kubernetes runtime', async () => {
    const bridge = await bridgeFor(
      {
        conformance: server({
          startTimeout: '15s',
          env: { FIXTURE_RECONNECT_DELAY_MS: '1500' },
        }),
      },
      {
        defaultServer: 'conformance',
        bridge: { sse: { pollAfter: '400ms', retry: 200 }, logLevel: 'warn' },
      }
    )
    const manifest = require.resolve('@modelcontextprotocol/conformance/package.json')
    const cli = join(dirname(manifest), 'dist', 'index.js')
    const out = mkdtempSync(join(tmpdir(), 'ferry-conformance-k8s-'))
    const { code, output } = await new Promise<{ code: number | null; output: string }>(
      (resolve) => {
        const child = spawn(
          process.execPath,
          [
            cli,
            'server',
            '--url',
            `http://localhost:${bridge.port}/mcp`,
            '--suite',
            'all',
            '-o',
            out,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] }
        )
        let output = ''
        child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
        child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
        const timer = setTimeout(() => child.kill('SIGKILL'), 170_000)
        child.on('exit', (exitCode) => {
          clearTimeout(timer)
          resolve({ code: exitCode, output })
        })
      }
    )
    expect(code, output.slice(-4000)).toBe(0)
    // Every scenario ran and none of its checks failed.
    const results = readdirSync(out).flatMap((entry) => {
      const file = join(out, entry, 'checks.json')
      if (!existsSync(file)) return []
      const checks = JSON.parse(readFileSync(file, 'utf8')) as { id: string; status: string }[]
      return [{ entry, failed: checks.filter((c) => c.status === 'FAILURE').map((c) => c.id) }]
    })
    rmSync(out, { recursive: true, force: true })
    expect(results.length).toBeGreaterThanOrEqual(30)
    expect(results.filter((r) => r.failed.length > 0)).toEqual([])
    // The suite's clients do not all end their sessions: stop what is left, as DELETE would.
    await cluster.synced()
    const left = jobsIn(cluster).map((job) => job.metadata!.name!)
    expect(left.length).toBeGreaterThan(0)
    await Promise.all(
      left.map((name) =>
        bridge.runtime.stop({
          sessionName: name,
          ref: { namespace: cluster.namespace, job: name },
        })
      )
    )
    for (const name of left) await expectBackgroundDelete(name)
  }, 180_000)
})

describe('after the suite', () => {
  it('leaves no Job, pod or pod process anywhere in the cluster', async () => {
    const left = await settledOrphans(cluster)
    console.log(
      `after the suite (${cluster.description}): ${left.jobs.length} Jobs and ` +
        `${left.pods.length} pods in any namespace` +
        `${cluster.real ? ' (listed with the admin client)' : ''}, ` +
        `${left.processes.length} pod processes, ${podProcesses(IP_PREFIX).length} processes on pod IPs`
    )
    expect(left).toEqual({ jobs: [], pods: [], processes: [] })
    expect(podProcesses(IP_PREFIX)).toEqual([])
  })
})
