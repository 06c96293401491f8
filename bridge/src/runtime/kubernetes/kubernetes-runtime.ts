/**
 * @module
 * The `kubernetes` runtime: one `batch/v1` Job per session. Start = create the Job
 * → watch its pod → Ready → the sidecar's address is the pod IP. Every failure
 * before that (image pull, invalid image, unschedulable, OOM, crash, missing
 * Secret/ConfigMap, API refusals) becomes a clear `WorkloadStartError` and the Job
 * is deleted. The Kubernetes API is only on the start and stop paths; a periodic
 * sweep, safe on every replica at once, removes Jobs of sessions that are over.
 *
 * `@kubernetes/client-node` is loaded on first use, so bridges without Kubernetes
 * servers never pay for it.
 */
import type * as K8s from '@kubernetes/client-node'
import type { BatchV1Api, CoreV1Api, KubeConfig, V1Job, V1Pod } from '@kubernetes/client-node'
import { type KubernetesServerConfig, type Logger, sidecarVerifier } from '@ferry/shared'
import {
  type SessionRuntime,
  type Workload,
  type WorkloadRef,
  type WorkloadSpec,
  WorkloadStartError,
  abortReason,
  untilAborted,
} from '../runtime.ts'
import { apiFailure, backoffMs, type ApiFailure } from './api-errors.ts'

/** Why a Kubernetes API call was given up on at the start's deadline. */
const API_TIMEOUT = 'the Kubernetes API did not answer in time'
import { podState } from './pod-readiness.ts'
import {
  MANAGED_SELECTOR,
  PRINCIPAL_LABEL,
  SERVER_LABEL,
  SESSION_LABEL,
  START_DEADLINE_ANNOTATION,
  buildSessionJob,
  type SidecarConnectionSettings,
} from './session-job.ts'

export interface KubernetesRuntimeOptions {
  /** Kubeconfig file; default `$KUBECONFIG`, `~/.kube/config`, then in-cluster. */
  kubeconfig?: string
  /** Kubeconfig context. */
  context?: string
  /** A ready-made config (tests). */
  kubeConfig?: KubeConfig
  /** Namespaces to sweep (those of the catalog's Kubernetes servers). */
  namespaces: string[]
  /** Sweep interval in ms; 0 disables the sweep. */
  sweepIntervalMs: number
  logger: Logger
  /** Sidecar path in the pod; tests point it at the work tree's bundle. */
  sidecarPath?: string
  /** How the bridge talks to sidecars (heartbeat, frame size, log level), passed to each pod. */
  connection?: SidecarConnectionSettings
}

/** How often a Job name collision is retried with a new name. */
const NAME_ATTEMPTS = 3
/** Finished Jobs younger than this are left to whoever is still cleaning them up. */
const SWEEP_GRACE_MS = 10_000

interface Clients {
  k8s: typeof K8s
  kc: KubeConfig
  batch: BatchV1Api
  core: CoreV1Api
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true })
  })

/** Whether a pod belongs to the Job `jobName` (not to an older Job of the same session). */
const ownedBy = (pod: V1Pod, jobName: string) =>
  (pod.metadata?.ownerReferences ?? []).some((ref) => ref.kind === 'Job' && ref.name === jobName) ||
  pod.metadata?.labels?.['batch.kubernetes.io/job-name'] === jobName ||
  pod.metadata?.labels?.['job-name'] === jobName

/** How long cleanup after a failed start may retry before the sweep is left to it. */
const CLEANUP_MS = 5_000
/** How long the best-effort look at Events for a timed-out start may take. */
const WHY_MS = 2_000

const wsAddress = (ip: string, port: number) => `ws://${ip.includes(':') ? `[${ip}]` : ip}:${port}`

const isFinished = (job: V1Job) =>
  (job.status?.conditions ?? []).some(
    (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True'
  ) ||
  (job.status?.succeeded ?? 0) > 0 ||
  (job.status?.failed ?? 0) > 0

export class KubernetesRuntime implements SessionRuntime {
  readonly kind = 'kubernetes'
  private readonly options: KubernetesRuntimeOptions
  private clients: Promise<Clients> | undefined
  private readonly started = new Set<string>()
  private sweeper: NodeJS.Timeout | undefined

  constructor(options: KubernetesRuntimeOptions) {
    this.options = options
    if (options.sweepIntervalMs > 0) {
      // Jitter spreads the replicas' sweeps apart.
      const interval = options.sweepIntervalMs * (0.75 + Math.random() / 2)
      this.sweeper = setInterval(
        () =>
          void this.sweep().catch((error: unknown) =>
            options.logger.warn({ error: apiFailure(error).message }, 'the sweep failed')
          ),
        interval
      )
      this.sweeper.unref()
    }
  }

  private connect(): Promise<Clients> {
    this.clients ??= (async () => {
      const k8s = await import('@kubernetes/client-node')
      let kc = this.options.kubeConfig
      if (!kc) {
        kc = new k8s.KubeConfig()
        if (this.options.kubeconfig) kc.loadFromFile(this.options.kubeconfig)
        else kc.loadFromDefault()
        if (this.options.context) kc.setCurrentContext(this.options.context)
      }
      return {
        k8s,
        kc,
        batch: kc.makeApiClient(k8s.BatchV1Api),
        core: kc.makeApiClient(k8s.CoreV1Api),
      }
    })()
    return this.clients
  }

  /** Sessions whose Jobs this replica started and has not seen end. */
  activeSessions(): number {
    return this.started.size
  }

  async start(spec: WorkloadSpec, signal: AbortSignal): Promise<Workload> {
    const server = spec.server as KubernetesServerConfig
    const { batch } = await this.connect()
    const verifier = await sidecarVerifier(spec.secret)
    const namespace = server.namespace
    let jobName = spec.sessionName
    for (let attempt = 1; ; attempt++) {
      const body = buildSessionJob({
        jobName,
        sessionName: spec.sessionName,
        serverName: spec.serverName,
        server,
        verifier,
        now: new Date(),
        sidecarPath: this.options.sidecarPath,
        ...(this.options.connection ? { connection: this.options.connection } : {}),
        ...(spec.principal === undefined ? {} : { labels: { [PRINCIPAL_LABEL]: spec.principal } }),
      })
      const name = jobName
      try {
        await this.withRetries(
          signal,
          `create the session's Job in namespace ${namespace}`,
          () => batch.createNamespacedJob({ namespace, body }),
          // Given up on (the start timed out) but it may still land: remove what it makes.
          (late) =>
            void late.then(
              () => this.removeJob(namespace, name, CLEANUP_MS).catch(() => undefined),
              () => undefined
            )
        )
        break
      } catch (error) {
        const failure = error instanceof JobApiError ? error.failure : undefined
        if (failure?.status === 409 && attempt < NAME_ATTEMPTS) {
          jobName = `${spec.sessionName}-${attempt}`
          continue
        }
        throw toStartError(error)
      }
    }
    this.started.add(jobName)
    try {
      const podIP = await this.waitForPod(namespace, jobName, spec.sessionName, signal)
      return {
        address: wsAddress(podIP, server.port),
        ref: { namespace, job: jobName },
      }
    } catch (error) {
      await this.removeJob(namespace, jobName, CLEANUP_MS).catch(() => undefined)
      throw toStartError(error)
    }
  }

  /** Calls the API, retrying throttling and server errors with backoff until `signal` aborts. */
  private async withRetries<T>(
    signal: AbortSignal,
    what: string,
    call: () => Promise<T>,
    abandoned?: (pending: Promise<T>) => void
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw abortReason(signal)
      try {
        return await untilAborted(call(), signal, API_TIMEOUT, abandoned)
      } catch (error) {
        if (error instanceof WorkloadStartError) throw error
        const failure = apiFailure(error)
        if (!failure.retryable || signal.aborted) throw new JobApiError(what, failure)
        this.options.logger.warn(
          { status: failure.status, attempt, error: failure.message },
          `retrying: ${what}`
        )
        await sleep(backoffMs(attempt, failure), signal)
        if (signal.aborted) throw new JobApiError(what, failure)
      }
    }
  }

  /** Watches the session's pod until it is Ready; rejects with the reason it never will be. */
  private async waitForPod(
    namespace: string,
    jobName: string,
    sessionName: string,
    signal: AbortSignal
  ): Promise<string> {
    const { k8s, kc, core } = await this.connect()
    const labelSelector = `${SESSION_LABEL}=${sessionName}`
    let unschedulable: string | undefined
    return new Promise<string>((resolve, reject) => {
      let watch: AbortController | undefined
      let settled = false
      const settle = (error: Error | undefined, ip?: string) => {
        if (settled) return
        settled = true
        signal.removeEventListener('abort', onAbort)
        watch?.abort()
        if (error) reject(error)
        else resolve(ip!)
      }
      const examine = (pod: V1Pod) => {
        // The session label may also be on an older Job's pod (a create retried after a 409).
        if (!ownedBy(pod, jobName)) return
        const state = podState(pod)
        if (state.kind === 'ready') settle(undefined, state.podIP)
        else if (state.kind === 'failed')
          settle(new WorkloadStartError(state.failure, state.message))
        else unschedulable = state.unschedulable
      }
      const onAbort = () => {
        const reason = signal.reason instanceof WorkloadStartError ? signal.reason : undefined
        if (unschedulable && reason?.failure === 'timeout') {
          settle(
            new WorkloadStartError(
              'unschedulable',
              `the pod could not be scheduled: ${unschedulable}`
            )
          )
          return
        }
        void this.whyNoPod(namespace, jobName).then((why) =>
          settle(
            why && reason?.failure === 'timeout'
              ? new WorkloadStartError('config', `${reason.message}: ${why}`)
              : (reason ?? new WorkloadStartError('timeout', 'the session start was aborted'))
          )
        )
      }
      // A start whose create only just made it may already be out of time.
      if (signal.aborted) return onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      // List, then watch from the list's resourceVersion, so no change falls between.
      const follow = async () => {
        while (!settled && !signal.aborted) {
          try {
            const list = await core.listNamespacedPod({ namespace, labelSelector })
            for (const pod of list.items) examine(pod)
            if (settled) return
            const ended = new Promise<void>((done) => {
              void new k8s.Watch(kc)
                .watch(
                  `/api/v1/namespaces/${namespace}/pods`,
                  {
                    labelSelector,
                    resourceVersion: list.metadata?.resourceVersion,
                    allowWatchBookmarks: true,
                  },
                  (type: string, pod: V1Pod) => {
                    if (type === 'DELETED' && ownedBy(pod, jobName)) {
                      settle(
                        new WorkloadStartError(
                          'exited',
                          'the session pod was deleted before it was ready'
                        )
                      )
                    } else if (type === 'ADDED' || type === 'MODIFIED') {
                      examine(pod)
                    }
                  },
                  (error: unknown) => {
                    // A refusal (403 …) is for good; timeouts, 410 and 5xx mean watch again.
                    const failure = error ? apiFailure(error) : undefined
                    if (
                      failure &&
                      failure.status >= 400 &&
                      failure.status !== 410 &&
                      !failure.retryable
                    ) {
                      settle(
                        new JobApiError(
                          `watch the session's pod in namespace ${namespace}`,
                          failure
                        )
                      )
                    }
                    done()
                  }
                )
                .then(
                  (controller) => {
                    watch = controller
                    if (settled) controller.abort()
                  },
                  () => done()
                )
            })
            await ended
          } catch (error) {
            const failure = apiFailure(error)
            if (!failure.retryable) {
              settle(new JobApiError(`watch the session's pod in namespace ${namespace}`, failure))
              return
            }
          }
          if (!settled) await sleep(200, signal)
        }
      }
      void follow()
    })
  }

  /** Best-effort reason a Job has no running pod (e.g. admission refused it). */
  private async whyNoPod(namespace: string, jobName: string): Promise<string | undefined> {
    try {
      const { core } = await this.connect()
      const bounded = new AbortController()
      const timer = setTimeout(() => bounded.abort(), WHY_MS)
      const events = await untilAborted(
        core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${jobName}` }),
        bounded.signal,
        API_TIMEOUT
      ).finally(() => clearTimeout(timer))
      const warning = events.items.filter((e) => e.type === 'Warning').at(-1)
      return warning ? `${warning.reason}: ${warning.message}` : undefined
    } catch {
      return undefined
    }
  }

  private async deleteJob(namespace: string, name: string): Promise<void> {
    const { batch } = await this.connect()
    try {
      // Background: without a propagation policy the API orphans the pod.
      await batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' })
    } catch (error) {
      if (apiFailure(error).status !== 404) throw error
    } finally {
      this.started.delete(name)
    }
  }

  /** Deletes a Job, retrying throttling and server errors for up to `budgetMs`. */
  private async removeJob(namespace: string, job: string, budgetMs: number): Promise<void> {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), budgetMs)
    timer.unref()
    try {
      await this.withRetries(controller.signal, `delete the session's Job ${job}`, () =>
        this.deleteJob(namespace, job)
      )
    } finally {
      clearTimeout(timer)
    }
  }

  async stop(workload: WorkloadRef): Promise<void> {
    const namespace = workload.ref?.namespace
    const job = workload.ref?.job
    if (!namespace || !job) return
    await this.removeJob(namespace, job, 30_000)
  }

  /**
   * The sessions of every replica that have not finished: the session Jobs (by the managed-by
   * selector) in the runtime's namespaces that are neither finished nor being deleted, with
   * their `ferry.dev/session`, `ferry.dev/server` and `ferry.dev/principal` labels. Backs the
   * cluster-wide session count (`ClusterSessionCounter`).
   */
  async countSessions(
    signal: AbortSignal
  ): Promise<{ session: string; server?: string; principal?: string }[]> {
    const { batch } = await this.connect()
    const sessions: { session: string; server?: string; principal?: string }[] = []
    for (const namespace of this.options.namespaces) {
      const jobs = await untilAborted(
        batch.listNamespacedJob({ namespace, labelSelector: MANAGED_SELECTOR }),
        signal,
        API_TIMEOUT
      )
      for (const job of jobs.items) {
        const labels = job.metadata?.labels ?? {}
        const session = labels[SESSION_LABEL]
        if (!session || job.metadata?.deletionTimestamp || isFinished(job)) continue
        const server = labels[SERVER_LABEL]
        const principal = labels[PRINCIPAL_LABEL]
        sessions.push({
          session,
          ...(server === undefined ? {} : { server }),
          ...(principal === undefined ? {} : { principal }),
        })
      }
    }
    return sessions
  }

  /**
   * Deletes Jobs of sessions that are over: finished ones, and starts that never
   * became ready by their deadline (a bridge died mid-start). Idempotent, so every
   * replica may sweep at the same time.
   */
  async sweep(now = Date.now()): Promise<string[]> {
    const { batch, core } = await this.connect()
    const swept: string[] = []
    // Sessions this replica started whose Jobs are over or gone (maybe swept by another
    // replica) no longer count as active; only those known before the listing are judged.
    const known = [...this.started]
    const running = new Set<string>()
    for (const namespace of this.options.namespaces) {
      const jobs = await batch.listNamespacedJob({ namespace, labelSelector: MANAGED_SELECTOR })
      for (const job of jobs.items) {
        const name = job.metadata?.name
        if (!name || job.metadata?.deletionTimestamp) continue
        const created = job.metadata?.creationTimestamp?.getTime() ?? now
        let over = isFinished(job) && now - created > SWEEP_GRACE_MS
        const deadline = Date.parse(job.metadata?.annotations?.[START_DEADLINE_ANNOTATION] ?? '')
        if (!over && Number.isFinite(deadline) && now > deadline + SWEEP_GRACE_MS) {
          const pods = await core.listNamespacedPod({
            namespace,
            labelSelector: `job-name=${name}`,
          })
          // A start that never got going: no pod ever ran. A running session whose
          // readiness probe fails for a moment is not over.
          over = !pods.items.some(
            (pod) => pod.status?.phase === 'Running' || podState(pod).kind === 'ready'
          )
        }
        if (!over) {
          if (!isFinished(job)) running.add(name)
          continue
        }
        try {
          await this.deleteJob(namespace, name)
          swept.push(name)
        } catch (error) {
          this.options.logger.warn(
            { job: name, error: apiFailure(error).message },
            'could not sweep a Job'
          )
        }
      }
    }
    for (const name of known) if (!running.has(name)) this.started.delete(name)
    if (swept.length)
      this.options.logger.info({ jobs: swept }, 'swept Jobs of sessions that are over')
    return swept
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper)
  }
}

/** A Kubernetes API call that failed for good. */
class JobApiError extends Error {
  readonly failure: ApiFailure
  constructor(what: string, failure: ApiFailure) {
    const detail =
      failure.status === 403 && /PodSecurity/.test(failure.message)
        ? `the pod breaks the namespace's Pod Security level: ${failure.message}`
        : failure.status === 403
          ? `the bridge is not allowed to ${what}: ${failure.message}`
          : failure.status === 422
            ? `the Job was refused as invalid: ${failure.message}`
            : `could not ${what}: ${failure.status ? `HTTP ${failure.status} ` : ''}${failure.message}`
    super(detail)
    this.name = 'JobApiError'
    this.failure = failure
  }
}

const toStartError = (error: unknown): WorkloadStartError => {
  if (error instanceof WorkloadStartError) return error
  if (error instanceof JobApiError) {
    const { status, message } = error.failure
    const config = status === 422 || (status === 403 && /PodSecurity/.test(message))
    return new WorkloadStartError(config ? 'config' : 'api', error.message)
  }
  return new WorkloadStartError('api', (error as Error)?.message ?? String(error))
}
