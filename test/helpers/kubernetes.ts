/**
 * @module test/helpers/kubernetes
 *
 * A real Ferry bridge whose servers run on the Kubernetes runtime, against a test cluster whose
 * pods are real local processes on their own loopback IPs (the kubelet simulator of `test/k8s`).
 * The runtime is the real `KubernetesRuntime`, injected through `serveBridge({ runtimes })`, with
 * the work tree's sidecar bundle as its sidecar path. It records the per-session secrets it was
 * handed and the bridge's log lines, so tests can prove the secret never shows up anywhere else.
 *
 * Two tiers (`startTestCluster`, picked by `FERRY_K8S_TIER`):
 * - `sim` (default): the simulated cluster of `test/k8s` (fake API server, Job controller,
 *   kubelet simulator), with fault injection and a request log;
 * - `real`: kube-apiserver + kube-controller-manager + etcd v1.20.2 (`test/k8s-real`, built by
 *   `test/k8s-real/build.sh`) with the RBAC of `manifests/base` applied; the bridge runs as the
 *   RoleBinding's ServiceAccount, the kubelet simulator as admin. No fault injection; the request
 *   log comes from the apiserver's audit log.
 *
 * Functions that take a cluster accept a `SimulatedCluster` (as before) or a `TestCluster`.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { KubeConfig } from '@kubernetes/client-node'
import {
  Keyring,
  KubernetesRuntime,
  type KubernetesRuntimeOptions,
  type RunningBridge,
  type Workload,
  type WorkloadSpec,
  serveBridge,
} from '@ferry/bridge'
import { CatalogSchema, createLogger } from '@ferry/shared'
import { startSimulatedCluster, type Orphans, type SimulatedCluster } from '../k8s/cluster.ts'
import type { KubeletSimulator, KubeletSimulatorOptions } from '../k8s/kubelet-simulator.ts'
import type { Job, Pod } from '../k8s/types.ts'
import { startRealCluster, type AuditedRequest, type RealCluster } from '../k8s-real/cluster.ts'
import { fixturePath } from './bridge.ts'
import { commandLine, isAlive } from './processes.ts'

/** The bundled sidecar the pods run (built by `npm run build`). */
export const sidecarBundle = fileURLToPath(
  new URL('../../sidecar/dist/sidecar.mjs', import.meta.url)
)
/** Image of normal session pods; the simulator runs the command whatever the image. */
export const SIDECAR_IMAGE = 'ferry.test/sidecar:dev'

/** A `runtime: kubernetes` catalog entry running the conformance fixture in `namespace`. */
export const kubernetesServer = (
  namespace: string,
  overrides: Record<string, unknown> = {}
): Record<string, unknown> => ({
  runtime: 'kubernetes',
  namespace,
  image: SIDECAR_IMAGE,
  nodePath: process.execPath,
  command: [process.execPath, fixturePath],
  // Long enough for a loaded machine; tests about timeouts set their own.
  startTimeout: '10s',
  idleTimeout: '2m',
  stopGrace: '1s',
  ...overrides,
})

/** The Kubernetes runtime, noting the session secrets it was given (to look for leaks). */
export class RecordingKubernetesRuntime extends KubernetesRuntime {
  readonly secrets: string[] = []

  override start(spec: WorkloadSpec, signal: AbortSignal): Promise<Workload> {
    this.secrets.push(spec.secret)
    return super.start(spec, signal)
  }
}

export type KubernetesTier = 'sim' | 'real'

/** The tier `FERRY_K8S_TIER` asks for: `sim` (default) or `real`. */
export const kubernetesTier = (): KubernetesTier => {
  const tier = process.env.FERRY_K8S_TIER || 'sim'
  if (tier !== 'sim' && tier !== 'real') {
    throw new Error(`FERRY_K8S_TIER must be "sim" or "real", not "${tier}"`)
  }
  return tier
}

/** A request the API server received (the fake server's log, or the real one's audit log). */
export type ApiRequest = AuditedRequest

/** A cluster of either tier, as the e2e suite uses it. */
export interface TestCluster {
  tier: KubernetesTier
  /** One line naming the cluster, for reports. */
  description: string
  /** The namespace session Jobs run in. */
  namespace: string
  /** The user the code under test authenticates as. */
  user: string
  /** The code under test's config (on `real`: the bridge's least-privilege token). */
  kubeconfig: KubeConfig
  kubelet: KubeletSimulator
  /** The simulated cluster (fault injection, hooks, its store), only on the `sim` tier. */
  sim: SimulatedCluster | undefined
  /** The real control plane and its extras, only on the `real` tier. */
  real: RealCluster | undefined
  /** Jobs in `namespace` now (on `real`: an informer's view; see `synced`). */
  jobs(): Job[]
  /** Pods in `namespace` now. */
  pods(): Pod[]
  /** Resolves once `jobs()`/`pods()` show everything the API server had when it was called. */
  synced(): Promise<void>
  /** Requests by `user` since the last `clearRequests()`. */
  requests(): ApiRequest[]
  clearRequests(): void
  /** What is left anywhere in the cluster: Jobs, pods (`namespace/name`) and pod processes. */
  orphans(): Promise<Orphans>
  /** Deletes every Job and pod, without waiting. */
  clean(): Promise<void>
  stop(): Promise<void>
}

export interface TestClusterOptions {
  /** Default `kubernetesTier()`. */
  tier?: KubernetesTier
  /** Namespace of session Jobs on `sim`; `real` uses the one `manifests/base` grants. */
  namespace: string
  kubelet?: Omit<KubeletSimulatorOptions, 'kubeconfig'>
  /** Progress lines while a `real` control plane starts. */
  log?: (line: string) => void
}

/** Starts a cluster of the requested tier. */
export const startTestCluster = async (options: TestClusterOptions): Promise<TestCluster> => {
  const tier = options.tier ?? kubernetesTier()
  if (tier === 'real') {
    const real = await startRealCluster({
      ...(options.kubelet ? { kubelet: options.kubelet } : {}),
      ...(options.log ? { log: options.log } : {}),
    })
    return {
      tier,
      description: real.description,
      namespace: real.namespace,
      user: real.user,
      kubeconfig: real.kubeconfig,
      kubelet: real.kubelet,
      sim: undefined,
      real,
      jobs: real.jobs,
      pods: real.pods,
      synced: () => real.synced(),
      requests: real.requests,
      clearRequests: real.clearRequests,
      orphans: real.orphans,
      clean: real.clean,
      stop: real.stop,
    }
  }
  const sim = await startSimulatedCluster({
    namespace: options.namespace,
    ...(options.kubelet ? { kubelet: options.kubelet } : {}),
  })
  return {
    tier,
    description: 'simulated cluster: fake API server, Job controller, kubelet simulator',
    namespace: sim.namespace,
    user: sim.user,
    kubeconfig: sim.kubeconfig,
    kubelet: sim.kubelet,
    sim,
    real: undefined,
    jobs: () => sim.api.store.list<Job>('jobs'),
    pods: () => sim.api.store.list<Pod>('pods'),
    synced: async () => {},
    requests: () => sim.api.requests.filter((request) => request.user === sim.user),
    clearRequests: () => void (sim.api.requests.length = 0),
    orphans: async () => sim.orphans(),
    clean: async () => cleanSimulated(sim),
    stop: () => sim.stop(),
  }
}

const isTestCluster = (cluster: SimulatedCluster | TestCluster): cluster is TestCluster =>
  'tier' in cluster

/** A runtime for `cluster` as the tests configure it (no periodic sweep). */
export const kubernetesRuntime = (
  cluster: SimulatedCluster | TestCluster,
  options: Partial<KubernetesRuntimeOptions> & { kubeConfig?: KubeConfig } = {}
): RecordingKubernetesRuntime =>
  new RecordingKubernetesRuntime({
    kubeConfig: cluster.kubeconfig,
    sidecarPath: sidecarBundle,
    namespaces: [cluster.namespace],
    sweepIntervalMs: 0,
    logger: createLogger({ name: 'kubernetes', level: 'silent' }),
    ...options,
  })

export type LogLine = Record<string, unknown> & { msg?: string }

export interface KubernetesBridge {
  running: RunningBridge
  runtime: RecordingKubernetesRuntime
  port: number
  /** MCP endpoint of `server`, or of the default server (`/mcp`) without one. */
  url(server?: string): string
  /** The bridge's JSON log lines so far (level debug), parsed. */
  logs(): LogLine[]
  /** The bridge's raw log text so far. */
  logText(): string
  close(): Promise<void>
}

export interface KubernetesBridgeOptions {
  /** Catalog servers (`kubernetesServer(…)` entries). */
  servers: Record<string, Record<string, unknown>>
  defaultServer?: string
  /** Overrides of the catalog's `bridge:` section. */
  bridge?: Record<string, unknown>
  /** Options of the runtime (e.g. another kubeConfig). */
  runtime?: Partial<KubernetesRuntimeOptions>
  /** Host in the bridge URLs (default 127.0.0.1). */
  host?: string
}

export const startKubernetesBridge = async (
  cluster: SimulatedCluster | TestCluster,
  options: KubernetesBridgeOptions
): Promise<KubernetesBridge> => {
  let text = ''
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      text += chunk.toString('utf8')
      callback()
    },
  })
  const logger = createLogger({ name: 'bridge', level: 'debug', destination })
  const runtime = kubernetesRuntime(cluster, {
    logger: logger.child({ runtime: 'kubernetes' }),
    ...options.runtime,
  })
  const catalog = CatalogSchema.parse({
    bridge: {
      host: '127.0.0.1',
      port: 0,
      logLevel: 'debug',
      shutdownGrace: '200ms',
      ...options.bridge,
    },
    ...(options.defaultServer ? { defaultServer: options.defaultServer } : {}),
    servers: options.servers,
  })
  const running = await serveBridge({
    catalog,
    keyring: await Keyring.generate(),
    logger,
    runtimes: { kubernetes: runtime },
  })
  const origin = `http://${options.host ?? '127.0.0.1'}:${running.port}`
  let closing: Promise<void> | undefined
  return {
    running,
    runtime,
    port: running.port,
    url: (server) => (server ? `${origin}/${server}/mcp` : `${origin}/mcp`),
    logText: () => text,
    logs: () =>
      text
        .split('\n')
        .filter(Boolean)
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as LogLine]
          } catch {
            return []
          }
        }),
    close: () => (closing ??= running.stop()),
  }
}

/** `Orphans` with processes as `namespace/name` (readable in a failed `toEqual`). */
export interface Leftovers {
  jobs: string[]
  pods: string[]
  processes: string[]
}

const leftovers = (orphans: Orphans): Leftovers => ({
  jobs: orphans.jobs,
  pods: orphans.pods,
  processes: orphans.processes.map((p) => `${p.namespace}/${p.name} (pid ${p.pid})`),
})

const empty = (left: Leftovers) =>
  left.jobs.length === 0 && left.pods.length === 0 && left.processes.length === 0

/**
 * What the cluster still holds once deletions in flight have had `timeoutMs` to finish (a
 * Background delete removes the pod after the Job, and the kubelet stops its process first).
 */
export const settledOrphans = async (
  cluster: SimulatedCluster | TestCluster,
  timeoutMs = 15_000
): Promise<Leftovers> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const left = leftovers(await cluster.orphans())
    if (empty(left) || Date.now() >= deadline) return left
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Live processes started inside the cluster's pods, found by the `POD_IP` in their environment
 * (`ipPrefix` is unique to one test file): the sidecar and, in its own process group, the MCP
 * server it started. `orphans()` sees only each pod's main process.
 */
export const podProcesses = (ipPrefix: string): string[] => {
  const found: string[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid || !isAlive(pid)) continue
    try {
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
      if (environ.some((line) => line.startsWith(`POD_IP=${ipPrefix}`))) {
        found.push(`${pid} ${commandLine(pid).slice(0, 200)}`)
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

/** Waits (bounded) until no process runs in the cluster's pods; returns those still running. */
export const settledPodProcesses = async (ipPrefix: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const left = podProcesses(ipPrefix)
    if (left.length === 0 || Date.now() >= deadline) return left
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Deletes every Job (Background) and pod in the cluster and waits until their processes end. */
export const cleanCluster = async (cluster: SimulatedCluster | TestCluster): Promise<void> => {
  if (isTestCluster(cluster)) await cluster.clean()
  else cleanSimulated(cluster)
  await settledOrphans(cluster, 10_000)
}

/** Clears faults and deletes every Job (Background) and pod of a simulated cluster. */
const cleanSimulated = (cluster: SimulatedCluster) => {
  cluster.api.faults.clear()
  for (const job of cluster.api.store.list<Job>('jobs')) {
    try {
      cluster.api.deleteObject('jobs', job.metadata!.namespace!, job.metadata!.name!, {
        propagationPolicy: 'Background',
      })
    } catch {
      // already going
    }
  }
  for (const pod of cluster.api.store.list<Pod>('pods')) {
    try {
      cluster.api.deleteObject('pods', pod.metadata!.namespace!, pod.metadata!.name!, {
        gracePeriodSeconds: 0,
      })
    } catch {
      // already going
    }
  }
}

/** Jobs in the cluster now (a copy of the fake API server's store, or the informer's view). */
export const jobsIn = (cluster: SimulatedCluster | TestCluster): Job[] =>
  isTestCluster(cluster) ? cluster.jobs() : cluster.api.store.list<Job>('jobs')

/** Pods in the cluster now. */
export const podsIn = (cluster: SimulatedCluster | TestCluster): Pod[] =>
  isTestCluster(cluster) ? cluster.pods() : cluster.api.store.list<Pod>('pods')

/** True when the Job has a `type` condition with status True. */
export const hasCondition = (job: Job | undefined, type: string): boolean =>
  (job?.status?.conditions ?? []).some((c) => c.type === type && c.status === 'True')

/** The `p`-th percentile (0–100) of `values`, nearest-rank. */
export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1] ?? NaN
}
