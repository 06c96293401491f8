/**
 * @module test/k8s/kubelet-simulator
 *
 * A scheduler plus kubelet for one fake node, talking to the API server only through
 * `@kubernetes/client-node` (so it works against the fake and a real kube-apiserver alike). It
 * binds unscheduled pods, gives each its own loopback pod IP, runs the first container's
 * `command + args` as a real local process with the pod's environment, reports Running on spawn
 * and Ready only once the readiness probe passes, reports exits, stops pods on deletion
 * (SIGTERM, SIGKILL after the grace period) and fakes failures on request (see sim-failures).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import {
  CoreV1Api,
  type Informer,
  type KubeConfig,
  makeInformer,
  type ObjectCache,
  type V1Container,
  type V1ContainerState,
  type V1Pod,
} from '@kubernetes/client-node'
import type { EventType } from './events.ts'
import { IpPool } from './ip-pool.ts'
import { codeOf, NodeApi, type PodRef } from './node-api.ts'
import { commandLine, ConfigError, resolveEnv } from './pod-env.ts'
import { PodProcess, type ProcessExit } from './pod-process.ts'
import {
  completedInitContainers,
  containerStatuses,
  setCondition,
  setReadiness,
  sortConditions,
} from './pod-status.ts'
import { probeOnce, probePort } from './readiness.ts'
import {
  annotationMs,
  FAIL_AFTER_ANNOTATION,
  failureModeOf,
  START_DELAY_ANNOTATION,
} from './sim-failures.ts'

export interface KubeletSimulatorOptions {
  kubeconfig: KubeConfig
  /** Namespaces to serve (default: all, through `/api/v1/pods`). */
  namespaces?: string[]
  nodeName?: string
  /** The node's address (`status.hostIP`), default 127.0.0.1. */
  hostIP?: string
  /** Pod IPs are `<ipPrefix>N`, N from `firstHost` (2) upward; default `127.0.0.`. */
  ipPrefix?: string
  firstHost?: number
  /** Working directory of pod processes (container `workingDir` is ignored). */
  cwd?: string
  /** Host environment every pod process starts from (default PATH, HOME, TMPDIR, LANG). */
  baseEnv?: Record<string, string>
  /** Readiness polling period until the first success (default 50 ms). */
  probeIntervalMs?: number
  /** How long ErrImagePull shows before ImagePullBackOff (default 300 ms). */
  imagePullBackOffMs?: number
  /** Delay for `slow-start` without its own annotation (default 1000 ms). */
  slowStartMs?: number
  /** Upper bound on termination grace periods, to keep tests quick (default none). */
  maxGracePeriodMs?: number
  /** SIGTERM→SIGKILL grace used by `stop()` (default 1000 ms). */
  stopGraceMs?: number
  /** Bytes of combined stdout/stderr kept per pod (default 1 MiB). */
  logLimitBytes?: number
  /** Post Events (Scheduled, Pulled, Started, Killing, Failed, BackOff …); default true. */
  events?: boolean
}

interface PodRecord {
  uid: string
  namespace: string
  name: string
  container: string
  ip?: string
  process?: PodProcess
  ready: boolean
  terminating: boolean
  oomKilled: boolean
  evicted?: string
  /** Aborted when the pod goes away or the simulator stops: ends probes, delays and timers. */
  abort: AbortController
  /** Status writes for one pod are serialised so they never race each other. */
  chain: Promise<void>
  /** Settles once the exit status has been written. */
  exitWritten?: Promise<void>
  /** The pod's start-up work (settles early when aborted). */
  task?: Promise<void>
}

export interface SimulatedProcess {
  namespace: string
  name: string
  pid: number
  ip: string | undefined
}

const DEFAULT_EVICTION =
  'The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. '
const UNSCHEDULABLE = '0/1 nodes are available: 1 Insufficient cpu.'

const defaultBaseEnv = (): Record<string, string> =>
  Object.fromEntries(
    ['PATH', 'HOME', 'TMPDIR', 'LANG'].flatMap((key) =>
      process.env[key] !== undefined ? [[key, process.env[key]!]] : []
    )
  )

export class KubeletSimulator {
  readonly nodeName: string
  private readonly options: KubeletSimulatorOptions
  private readonly core: CoreV1Api
  private readonly node: NodeApi
  private readonly pool: IpPool
  private readonly hostIP: string
  private readonly records = new Map<string, PodRecord>()
  private readonly scheduling = new Set<string>()
  private readonly informers: Array<Informer<V1Pod> & ObjectCache<V1Pod>> = []
  private readonly retries = new Set<NodeJS.Timeout>()
  /** Every pod process not yet exited, including those of pods already forgotten. */
  private readonly live = new Set<PodProcess>()
  private stopped = false

  constructor(options: KubeletSimulatorOptions) {
    this.options = options
    this.nodeName = options.nodeName ?? 'sim-node'
    this.hostIP = options.hostIP ?? '127.0.0.1'
    this.core = options.kubeconfig.makeApiClient(CoreV1Api)
    this.node = new NodeApi(this.core, this.nodeName, options.events !== false)
    this.pool = new IpPool(options.ipPrefix ?? '127.0.0.', options.firstHost ?? 2)
  }

  /** Starts watching pods; resolves once the initial lists are in. */
  async start(): Promise<void> {
    const namespaces = this.options.namespaces
    const targets = namespaces?.length
      ? namespaces.map((namespace) => ({
          path: `/api/v1/namespaces/${namespace}/pods`,
          list: () => this.core.listNamespacedPod({ namespace }),
        }))
      : [{ path: '/api/v1/pods', list: () => this.core.listPodForAllNamespaces() }]
    for (const target of targets) {
      const informer = makeInformer<V1Pod>(this.options.kubeconfig, target.path, target.list)
      informer.on('add', (pod) => this.reconcile(pod))
      informer.on('update', (pod) => this.reconcile(pod))
      informer.on('delete', (pod) => this.forget(pod))
      // An informer stays stopped after a non-410 error; restart it like a real kubelet would.
      informer.on('error', () => this.later(500, () => void informer.start().catch(() => {})))
      this.informers.push(informer)
      await informer.start()
    }
  }

  /** Stops watching and kills every pod process (SIGTERM, then SIGKILL); writes nothing more. */
  async stop(): Promise<void> {
    this.stopped = true
    this.node.close()
    for (const timer of this.retries) clearTimeout(timer)
    this.retries.clear()
    await Promise.all(this.informers.map((informer) => informer.stop()))
    const records = [...this.records.values()]
    for (const record of records) record.abort.abort()
    // Let in-flight starts settle first, so a process spawned right now is not missed.
    await Promise.allSettled(records.map((record) => record.task))
    const grace = this.options.stopGraceMs ?? 1000
    await Promise.all([...this.live].map((child) => child.stop(grace)))
    for (const record of records) this.pool.release(record.ip)
    this.records.clear()
  }

  /** Captured stdout+stderr of a pod's first container (`undefined` for unknown pods). */
  logs(namespace: string, name: string, container?: string): string | undefined {
    const record = this.find(namespace, name)
    if (!record) return undefined
    if (container && container !== record.container) return ''
    return record.process?.logs() ?? ''
  }

  /** Pod processes still running. */
  processes(): SimulatedProcess[] {
    return [...this.records.values()]
      .filter((record) => record.process?.running)
      .map((record) => ({
        namespace: record.namespace,
        name: record.name,
        pid: record.process!.pid,
        ip: record.ip,
      }))
  }

  /** The loopback IP given to a pod, if it has one. */
  podIP(namespace: string, name: string): string | undefined {
    return this.find(namespace, name)?.ip
  }

  /** Pod IPs currently allocated. */
  get allocatedIPs(): string[] {
    return this.pool.inUse
  }

  /** Node-pressure eviction: DisruptionTarget, the process killed, phase Failed/Evicted. */
  async evict(namespace: string, name: string, message = DEFAULT_EVICTION): Promise<void> {
    const record = this.find(namespace, name)
    if (!record?.process?.running) throw new Error(`pod ${namespace}/${name} is not running here`)
    record.evicted = message
    await this.event(record, 'Warning', 'Evicted', message)
    record.process.signalGroup('SIGKILL')
    await record.exitWritten
  }

  private find(namespace: string, name: string): PodRecord | undefined {
    return [...this.records.values()].find(
      (record) => record.namespace === namespace && record.name === name
    )
  }

  private later(ms: number, work: () => void) {
    if (this.stopped) return
    const timer = setTimeout(() => {
      this.retries.delete(timer)
      if (!this.stopped) work()
    }, ms)
    this.retries.add(timer)
  }

  private reconcile(pod: V1Pod) {
    if (this.stopped) return
    const uid = pod.metadata?.uid
    if (!uid) return
    if (pod.metadata?.deletionTimestamp) return void this.terminate(pod)
    if (!pod.spec?.nodeName) return void this.schedule(pod)
    if (pod.spec.nodeName !== this.nodeName || this.records.has(uid)) return
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return
    const record: PodRecord = {
      uid,
      namespace: pod.metadata!.namespace!,
      name: pod.metadata!.name!,
      container: pod.spec.containers[0]?.name ?? '',
      ready: false,
      terminating: false,
      oomKilled: false,
      abort: new AbortController(),
      chain: Promise.resolve(),
    }
    this.records.set(uid, record)
    record.task = this.run(record, pod).catch((error) => {
      if (!this.stopped && !record.abort.signal.aborted)
        console.error('[k8s-sim] kubelet failed to run pod', error)
    })
  }

  /** The scheduler's part: bind to this node, or report the pod unschedulable. */
  private async schedule(pod: V1Pod) {
    const ref: PodRef = {
      uid: pod.metadata!.uid!,
      namespace: pod.metadata!.namespace!,
      name: pod.metadata!.name!,
    }
    if (this.scheduling.has(ref.uid)) return
    this.scheduling.add(ref.uid)
    if (failureModeOf(pod) === 'unschedulable') {
      await this.node.writeStatus(ref, (status) => {
        setCondition(status, 'PodScheduled', false, 'Unschedulable', UNSCHEDULABLE)
        status.phase = 'Pending'
      })
      await this.node.event(ref, 'Warning', 'FailedScheduling', UNSCHEDULABLE, 'default-scheduler')
      return
    }
    try {
      await this.node.bind(ref)
      const message = `Successfully assigned ${ref.namespace}/${ref.name} to ${this.nodeName}`
      await this.node.event(ref, 'Normal', 'Scheduled', message, 'default-scheduler')
    } catch (error) {
      const code = codeOf(error)
      if (code === 409 || code === 404 || this.stopped) return
      // Transient API trouble (429/5xx): try again shortly, as the scheduler would.
      this.scheduling.delete(ref.uid)
      this.later(200, () => this.reconcile(pod))
    }
  }

  private async run(record: PodRecord, pod: V1Pod) {
    const container = pod.spec!.containers[0]!
    const mode = failureModeOf(pod)
    const probe = container.readinessProbe
    const ports = [
      ...(container.ports ?? []).map((port) => port.containerPort),
      ...[
        probePort(probe?.tcpSocket?.port, container),
        probePort(probe?.httpGet?.port, container),
      ].filter((port): port is number => port !== undefined),
    ]
    record.ip = await this.pool.allocate([...new Set(ports)])
    if (record.abort.signal.aborted) return this.pool.release(record.ip)
    const ip = record.ip
    const startTime = new Date()
    await this.node.writeStatus(record, (status, current) => {
      status.phase = 'Pending'
      status.hostIP = this.hostIP
      status.hostIPs = [{ ip: this.hostIP }]
      status.podIP = ip
      status.podIPs = [{ ip }]
      status.startTime ??= startTime
      setCondition(status, 'PodScheduled', true)
      setCondition(status, 'PodReadyToStartContainers', true)
      setCondition(status, 'Initialized', true)
      setReadiness(status, current, false)
      status.containerStatuses = containerStatuses(
        current,
        { waiting: { reason: 'ContainerCreating' } },
        { ready: false, started: false }
      )
      const init = completedInitContainers(current, startTime)
      if (init) status.initContainerStatuses = init
      status.qosClass ??= 'BestEffort'
    })
    const image = container.image ?? ''
    if (mode === 'invalid-image') {
      const message = `Failed to apply default image tag "${image}": couldn't parse image name "${image}": invalid reference format`
      await this.event(record, 'Warning', 'InspectFailed', message)
      return this.wait(record, 'InvalidImageName', message)
    }
    if (mode === 'image-pull') return this.failPull(record, image)
    await this.event(
      record,
      'Normal',
      'Pulled',
      `Container image "${image}" already present on machine`
    )

    let env: Record<string, string>
    try {
      if (mode === 'config') throw new ConfigError('secret "sim-missing-secret" not found')
      env = await resolveEnv(
        pod,
        container,
        { podIP: ip, hostIP: this.hostIP },
        {
          secret: (namespace, name) => this.node.readData('secret', namespace, name),
          configMap: (namespace, name) => this.node.readData('configMap', namespace, name),
        }
      )
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      await this.event(record, 'Warning', 'Failed', `Error: ${error.message}`)
      return this.wait(record, 'CreateContainerConfigError', error.message)
    }

    const delay = annotationMs(
      pod,
      START_DELAY_ANNOTATION,
      mode === 'slow-start' ? (this.options.slowStartMs ?? 1000) : 0
    )
    if (delay > 0) await sleep(delay, undefined, { signal: record.abort.signal })
    if (record.abort.signal.aborted || record.terminating) return

    const command = commandLine(container, env)
    if (command.length === 0) {
      await this.event(record, 'Warning', 'Failed', 'Error: no command specified')
      return this.wait(record, 'CreateContainerError', 'no command specified')
    }
    const containerID = `sim://${record.uid}`
    if (mode === 'crash') {
      const at = new Date()
      await this.event(record, 'Normal', 'Created', `Created container: ${record.container}`)
      await this.event(record, 'Normal', 'Started', `Started container ${record.container}`)
      return this.writeTerminated(record, {
        exitCode: 1,
        reason: 'Error',
        startedAt: at,
        finishedAt: at,
        containerID,
      })
    }
    try {
      record.process = await PodProcess.start({
        command,
        env: { ...(this.options.baseEnv ?? defaultBaseEnv()), HOSTNAME: record.name, ...env },
        cwd: this.options.cwd ?? process.cwd(),
        logLimitBytes: this.options.logLimitBytes ?? 1 << 20,
      })
    } catch (error) {
      const message = (error as Error).message
      await this.event(record, 'Warning', 'Failed', `Error: ${message}`)
      return this.wait(record, 'RunContainerError', message)
    }
    const child = record.process
    this.live.add(child)
    void child.exited.then(() => this.live.delete(child))
    record.exitWritten = child.exited.then((exit) => this.onExit(record, exit, containerID))
    if (record.abort.signal.aborted) return void child.signalGroup('SIGKILL')
    await this.event(record, 'Normal', 'Created', `Created container: ${record.container}`)
    await this.event(record, 'Normal', 'Started', `Started container ${record.container}`)
    const readyAtOnce = !probe
    record.ready = readyAtOnce
    await this.node.writeStatus(record, (status, current) => {
      if (!child.running) return
      status.phase = 'Running'
      status.containerStatuses = containerStatuses(
        current,
        { running: { startedAt: child.startedAt } },
        { ready: readyAtOnce, started: true, containerID }
      )
      setReadiness(status, current, readyAtOnce)
    })
    if (mode === 'oom' || mode === 'evict') {
      const after = annotationMs(pod, FAIL_AFTER_ANNOTATION, 0)
      void sleep(after, undefined, { signal: record.abort.signal })
        .then(() => {
          if (!child.running || record.terminating) return
          if (mode === 'evict') {
            void this.evict(record.namespace, record.name).catch(() => {})
            return
          }
          record.oomKilled = true
          child.signalGroup('SIGKILL')
        })
        .catch(() => {})
    }
    if (probe) await this.probeLoop(record, container, ip)
  }

  private async failPull(record: PodRecord, image: string) {
    const pullError = `failed to pull and unpack image "${image}": failed to resolve reference "${image}": ${image}: not found`
    await this.event(record, 'Normal', 'Pulling', `Pulling image "${image}"`)
    await this.event(record, 'Warning', 'Failed', `Failed to pull image "${image}": ${pullError}`)
    await this.event(record, 'Warning', 'Failed', 'Error: ErrImagePull')
    await this.wait(record, 'ErrImagePull', pullError)
    await sleep(this.options.imagePullBackOffMs ?? 300, undefined, { signal: record.abort.signal })
    if (record.terminating) return
    await this.event(record, 'Normal', 'BackOff', `Back-off pulling image "${image}"`)
    await this.event(record, 'Warning', 'Failed', 'Error: ImagePullBackOff')
    await this.wait(record, 'ImagePullBackOff', `Back-off pulling image "${image}"`)
  }

  /** A container stuck before running: `waiting` with a reason, pod Pending. */
  private wait(record: PodRecord, reason: string, message: string) {
    return this.node.writeStatus(record, (status, current) => {
      status.phase = 'Pending'
      status.containerStatuses = containerStatuses(
        current,
        { waiting: { reason, message } },
        { ready: false, started: false }
      )
    })
  }

  private async probeLoop(record: PodRecord, container: V1Container, ip: string) {
    const probe = container.readinessProbe!
    const signal = record.abort.signal
    const fast = this.options.probeIntervalMs ?? 50
    const period = Math.max(fast, (probe.periodSeconds ?? 10) * 1000)
    const successThreshold = probe.successThreshold ?? 1
    const failureThreshold = probe.failureThreshold ?? 3
    let successes = 0
    let failures = 0
    let everReady = false
    await sleep((probe.initialDelaySeconds ?? 0) * 1000, undefined, { signal })
    while (record.process?.running && !signal.aborted && !record.terminating) {
      const ok = await probeOnce(probe, container, ip)
      if (!record.process.running || signal.aborted || record.terminating) return
      successes = ok ? successes + 1 : 0
      failures = ok ? 0 : failures + 1
      const becomesReady: boolean =
        !record.ready && ok && successes >= (everReady ? successThreshold : 1)
      const becomesUnready = record.ready && failures >= failureThreshold
      if (becomesReady || becomesUnready) {
        record.ready = becomesReady
        everReady ||= becomesReady
        const ready = record.ready
        await this.node.writeStatus(record, (status, current) => {
          if (!record.process?.running || record.terminating) return
          const first = status.containerStatuses?.[0]
          if (first) first.ready = ready
          setReadiness(status, current, ready)
        })
        if (becomesUnready)
          await this.event(record, 'Warning', 'Unhealthy', 'Readiness probe failed')
      }
      await sleep(record.ready ? period : fast, undefined, { signal })
    }
  }

  private async onExit(record: PodRecord, exit: ProcessExit, containerID: string) {
    const exitCode = record.oomKilled ? 137 : exit.exitCode
    const reason = record.oomKilled ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error'
    if (this.stopped) return
    await this.writeTerminated(record, {
      exitCode,
      reason,
      startedAt: record.process!.startedAt,
      finishedAt: exit.finishedAt,
      containerID,
    })
  }

  private writeTerminated(
    record: PodRecord,
    terminated: NonNullable<V1ContainerState['terminated']> & { containerID: string }
  ) {
    const { containerID, ...state } = terminated
    const failed = state.exitCode !== 0 || record.evicted !== undefined
    return this.node.writeStatus(record, (status, current) => {
      status.phase = failed ? 'Failed' : 'Succeeded'
      status.containerStatuses = containerStatuses(
        current,
        { terminated: { ...state, containerID } },
        { ready: false, started: false, containerID }
      )
      setReadiness(status, current, false, 'PodCompleted')
      if (record.evicted !== undefined) {
        status.reason = 'Evicted'
        status.message = record.evicted
        setCondition(status, 'DisruptionTarget', true, 'TerminationByKubelet', record.evicted)
        sortConditions(status)
      }
    })
  }

  /** Graceful deletion: stop the process within the grace period, then remove the pod for good. */
  private async terminate(pod: V1Pod) {
    const uid = pod.metadata!.uid!
    if (pod.spec?.nodeName !== this.nodeName) return
    let record = this.records.get(uid)
    if (record?.terminating) return
    if (!record) {
      record = {
        uid,
        namespace: pod.metadata!.namespace!,
        name: pod.metadata!.name!,
        container: pod.spec?.containers[0]?.name ?? '',
        ready: false,
        terminating: true,
        oomKilled: false,
        abort: new AbortController(),
        chain: Promise.resolve(),
      }
      this.records.set(uid, record)
    }
    record.terminating = true
    const seconds =
      pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30
    const graceMs = Math.min(seconds * 1000, this.options.maxGracePeriodMs ?? Infinity)
    if (record.process?.running) {
      await this.event(record, 'Normal', 'Killing', `Stopping container ${record.container}`)
      await record.process.stop(graceMs)
      await record.exitWritten
    }
    record.abort.abort()
    await record.chain
    if (this.stopped) return
    try {
      await this.node.deleteForGood(record)
    } catch (error) {
      if (codeOf(error) !== 404 && codeOf(error) !== 409 && !this.stopped) {
        // Let the next event (or a retry) try again.
        record.terminating = false
        this.later(200, () => this.reconcile(pod))
      }
    }
  }

  /** The pod object is gone: make sure nothing of it keeps running, and free its IP. */
  private forget(pod: V1Pod) {
    const uid = pod.metadata?.uid
    if (!uid) return
    this.scheduling.delete(uid)
    const record = this.records.get(uid)
    if (!record) return
    this.records.delete(uid)
    record.abort.abort()
    record.process?.signalGroup('SIGKILL')
    const release = () => this.pool.release(record.ip)
    if (record.process?.running) void record.process.exited.then(release)
    else release()
  }

  private event(record: PodRecord, type: EventType, reason: string, message: string) {
    return this.node.event(
      record,
      type,
      reason,
      message,
      'kubelet',
      `spec.containers{${record.container}}`
    )
  }
}
