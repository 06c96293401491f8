/**
 * @module test/k8s/job-controller
 *
 * The `batch/v1` Job controller (and TTL-after-finished controller) of the simulated cluster,
 * running in-process against the fake API server's store. It creates each Job's pod from the
 * template, counts pod outcomes into `status.succeeded`/`failed`, and finishes the Job the way
 * Kubernetes 1.31+ does: interim `FailureTarget`/`SuccessCriteriaMet`, then `Failed`
 * (`BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`) or `Complete` once no pod is
 * left running; `ttlSecondsAfterFinished` then deletes the Job in the foreground.
 */
import { buildEvent, type EventType } from './events.ts'
import type { FakeApiServer } from './fake-api-server.ts'
import { StatusError } from './status.ts'
import type { StoreEvent } from './store.ts'
import { type Job, type KubeObject, type Pod, clone, nowRfc3339 } from './types.ts'

export interface JobControllerOptions {
  /** Delay before re-creating a pod after the first failure; doubles per failure (real: 10 s). */
  backoffBaseMs?: number
  /** Cap of that delay (real: 6 min). */
  backoffMaxMs?: number
}

type JobCondition = NonNullable<NonNullable<Job['status']>['conditions']>[number]
type Outcome = { type: 'Failed' | 'Complete'; reason: string; message: string }

interface Tracking {
  uid: string
  known: Set<string>
  counted: Set<string>
  succeeded: number
  failed: number
  startedAt?: number
  finishedAt?: number
  lastFailureAt?: number
  timers: Map<string, NodeJS.Timeout>
}

const COMPONENT = 'job-controller'
const isTerminal = (pod: Pod) => pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed'
const condition = (job: Job, type: string) =>
  job.status?.conditions?.find((c) => c.type === type && c.status === 'True')
const finished = (job: Job) => condition(job, 'Complete') ?? condition(job, 'Failed')

/** The first podFailurePolicy rule matching a failed pod, with the controller's message. */
export const matchPodFailurePolicy = (
  job: Job,
  pod: Pod
): { action: string; message: string } | undefined => {
  const where = `${pod.metadata?.namespace}/${pod.metadata?.name}`
  for (const [index, rule] of (job.spec?.podFailurePolicy?.rules ?? []).entries()) {
    const exit = rule.onExitCodes
    if (exit) {
      const statuses = [
        ...(pod.status?.initContainerStatuses ?? []),
        ...(pod.status?.containerStatuses ?? []),
      ]
      const hit = statuses.find((status) => {
        const code = status.state?.terminated?.exitCode
        if (code === undefined || code === 0) return false
        if (exit.containerName && exit.containerName !== status.name) return false
        return exit.operator === 'In' ? exit.values.includes(code) : !exit.values.includes(code)
      })
      if (hit) {
        return {
          action: rule.action,
          message: `Container ${hit.name} for pod ${where} failed with exit code ${hit.state!.terminated!.exitCode} matching ${rule.action} rule at index ${index}`,
        }
      }
    }
    for (const pattern of rule.onPodConditions ?? []) {
      const found = pod.status?.conditions?.find(
        (c) => c.type === pattern.type && c.status === (pattern.status ?? 'True')
      )
      if (found) {
        return {
          action: rule.action,
          message: `Pod ${where} has condition ${pattern.type} matching ${rule.action} rule at index ${index}`,
        }
      }
    }
  }
  return undefined
}

export class JobController {
  private readonly api: FakeApiServer
  private readonly backoffBaseMs: number
  private readonly backoffMaxMs: number
  private readonly tracking = new Map<string, Tracking>()
  private readonly dirty = new Set<string>()
  private flush: NodeJS.Immediate | undefined
  private unsubscribe: (() => void) | undefined

  constructor(api: FakeApiServer, options: JobControllerOptions = {}) {
    this.api = api
    this.backoffBaseMs = options.backoffBaseMs ?? 10_000
    this.backoffMaxMs = options.backoffMaxMs ?? 360_000
  }

  start() {
    this.unsubscribe ??= this.api.store.subscribe((event) => this.onEvent(event))
    for (const job of this.api.store.list<Job>('jobs'))
      this.enqueue(job.metadata!.namespace!, job.metadata!.name!)
  }

  stop() {
    this.unsubscribe?.()
    this.unsubscribe = undefined
    if (this.flush) clearImmediate(this.flush)
    this.flush = undefined
    this.dirty.clear()
    for (const tracked of this.tracking.values())
      for (const timer of tracked.timers.values()) clearTimeout(timer)
    this.tracking.clear()
  }

  private onEvent(event: StoreEvent) {
    const meta = event.object.metadata
    if (event.resource === 'jobs') this.enqueue(meta!.namespace!, meta!.name!)
    if (event.resource === 'pods') {
      const owner = meta?.ownerReferences?.find((ref) => ref.kind === 'Job' && ref.controller)
      if (owner) this.enqueue(meta!.namespace!, owner.name)
    }
  }

  /** Level-triggered: changes only mark a Job dirty; one sync per Job per tick does the work. */
  private enqueue(namespace: string, name: string) {
    this.dirty.add(`${namespace}/${name}`)
    this.flush ??= setImmediate(() => {
      this.flush = undefined
      const keys = [...this.dirty]
      this.dirty.clear()
      for (const key of keys) {
        const [namespace, name] = key.split('/') as [string, string]
        try {
          this.sync(namespace, name)
        } catch (error) {
          console.error(`[k8s-sim] job controller failed to sync ${key}`, error)
        }
      }
    })
  }

  private timer(tracked: Tracking, kind: string, delayMs: number, namespace: string, name: string) {
    clearTimeout(tracked.timers.get(kind))
    const timer = setTimeout(
      () => {
        tracked.timers.delete(kind)
        if (this.unsubscribe) this.enqueue(namespace, name)
      },
      Math.max(0, delayMs)
    )
    timer.unref()
    tracked.timers.set(kind, timer)
  }

  private event(object: KubeObject, type: EventType, reason: string, message: string) {
    try {
      this.api.createObject(
        'events',
        object.metadata!.namespace!,
        buildEvent(object, type, reason, message, { component: COMPONENT })
      )
    } catch {
      // Events are best effort, as in a real cluster.
    }
  }

  private sync(namespace: string, name: string) {
    const job = this.api.store.get<Job>('jobs', namespace, name)
    const key = `${namespace}/${name}`
    let tracked = this.tracking.get(key)
    if (!job || job.metadata?.uid !== tracked?.uid) {
      for (const timer of tracked?.timers.values() ?? []) clearTimeout(timer)
      this.tracking.delete(key)
      tracked = undefined
    }
    if (!job || job.metadata?.deletionTimestamp) return
    tracked ??= this.track(job)
    const done = finished(job)
    if (done) return this.scheduleTtl(job, tracked, done)

    const now = Date.now()
    const pods = this.api.store
      .list<Pod>('pods', namespace)
      .filter((pod) => pod.metadata?.ownerReferences?.some((ref) => ref.uid === tracked.uid))
    let outcome: Outcome | undefined
    for (const pod of pods) {
      const uid = pod.metadata!.uid!
      tracked.known.add(uid)
      if (tracked.counted.has(uid) || !isTerminal(pod)) continue
      tracked.counted.add(uid)
      if (pod.status?.phase === 'Succeeded') {
        tracked.succeeded += 1
        continue
      }
      const match = matchPodFailurePolicy(job, pod)
      if (match?.action === 'Ignore') continue
      tracked.failed += 1
      tracked.lastFailureAt = now
      if (match?.action === 'FailJob' || match?.action === 'FailIndex') {
        outcome ??= { type: 'Failed', reason: 'PodFailurePolicy', message: match.message }
      }
    }
    // A pod that disappeared before reaching a terminal phase counts as failed, as with the
    // real controller's tracking finalizers.
    for (const uid of tracked.known) {
      if (tracked.counted.has(uid) || pods.some((pod) => pod.metadata?.uid === uid)) continue
      tracked.counted.add(uid)
      tracked.failed += 1
      tracked.lastFailureAt = now
    }

    const spec = job.spec!
    const completions = spec.completions ?? 1
    const previousTarget = condition(job, 'FailureTarget') ?? condition(job, 'SuccessCriteriaMet')
    if (previousTarget) {
      outcome = {
        type: previousTarget.type === 'FailureTarget' ? 'Failed' : 'Complete',
        reason: previousTarget.reason ?? '',
        message: previousTarget.message ?? '',
      }
    }
    if (!outcome && tracked.failed > (spec.backoffLimit ?? 6)) {
      outcome = {
        type: 'Failed',
        reason: 'BackoffLimitExceeded',
        message: 'Job has reached the specified backoff limit',
      }
    }
    const startedAt = tracked.startedAt ?? now
    if (!outcome && spec.activeDeadlineSeconds !== undefined && !spec.suspend) {
      const deadline = startedAt + spec.activeDeadlineSeconds * 1000
      if (now >= deadline) {
        outcome = {
          type: 'Failed',
          reason: 'DeadlineExceeded',
          message: 'Job was active longer than specified deadline',
        }
      } else this.timer(tracked, 'deadline', deadline - now, namespace, name)
    }
    if (!outcome && tracked.succeeded >= completions) {
      outcome = {
        type: 'Complete',
        reason: 'CompletionsReached',
        message: 'Reached expected number of succeeded pods',
      }
    }

    let live = pods.filter((pod) => !isTerminal(pod))
    if (outcome || spec.suspend) {
      for (const pod of live.filter((p) => !p.metadata?.deletionTimestamp)) {
        try {
          this.api.deleteObject('pods', namespace, pod.metadata!.name!)
          this.event(job, 'Normal', 'SuccessfulDelete', `Deleted pod: ${pod.metadata!.name}`)
        } catch {
          // Gone already.
        }
      }
      live = this.api.store
        .list<Pod>('pods', namespace)
        .filter(
          (pod) =>
            pod.metadata?.ownerReferences?.some((ref) => ref.uid === tracked.uid) &&
            !isTerminal(pod)
        )
    } else {
      this.createMissing(job, tracked, live, completions, now)
      live = this.api.store
        .list<Pod>('pods', namespace)
        .filter(
          (pod) =>
            pod.metadata?.ownerReferences?.some((ref) => ref.uid === tracked.uid) &&
            !isTerminal(pod)
        )
    }
    if (!spec.suspend) tracked.startedAt = startedAt
    if (outcome && live.length === 0) tracked.finishedAt = now
    this.writeStatus(job, tracked, live, outcome)
  }

  private track(job: Job): Tracking {
    const tracked: Tracking = {
      uid: job.metadata!.uid!,
      known: new Set(),
      counted: new Set(),
      succeeded: job.status?.succeeded ?? 0,
      failed: job.status?.failed ?? 0,
      timers: new Map(),
    }
    if (job.status?.startTime) tracked.startedAt = Date.parse(job.status.startTime)
    this.tracking.set(`${job.metadata!.namespace}/${job.metadata!.name}`, tracked)
    return tracked
  }

  private createMissing(
    job: Job,
    tracked: Tracking,
    live: Pod[],
    completions: number,
    now: number
  ) {
    const spec = job.spec!
    // `TerminatingOrFailed` replaces a pod as soon as it is being deleted; `Failed` (the default
    // with a podFailurePolicy) waits until it has really stopped.
    const waitsForTerminal = spec.podReplacementPolicy === 'Failed'
    const active = live.filter((pod) => waitsForTerminal || !pod.metadata?.deletionTimestamp)
    const want = Math.min(spec.parallelism ?? 1, completions - tracked.succeeded) - active.length
    if (want <= 0) return
    if (tracked.failed > 0 && tracked.lastFailureAt !== undefined) {
      const delay = Math.min(this.backoffBaseMs * 2 ** (tracked.failed - 1), this.backoffMaxMs)
      if (now < tracked.lastFailureAt + delay) {
        this.timer(
          tracked,
          'backoff',
          tracked.lastFailureAt + delay - now,
          job.metadata!.namespace!,
          job.metadata!.name!
        )
        return
      }
    }
    const template = spec.template
    for (let i = 0; i < want; i++) {
      const pod: Pod = {
        metadata: {
          generateName: `${job.metadata!.name}-`,
          labels: clone(template.metadata?.labels ?? {}),
          ...(template.metadata?.annotations
            ? { annotations: clone(template.metadata.annotations) }
            : {}),
          ownerReferences: [
            {
              apiVersion: 'batch/v1',
              kind: 'Job',
              name: job.metadata!.name!,
              uid: job.metadata!.uid!,
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        },
        spec: clone(template.spec!),
      }
      try {
        const created = this.api.createObject('pods', job.metadata!.namespace!, pod)
        this.event(job, 'Normal', 'SuccessfulCreate', `Created pod: ${created.metadata!.name}`)
      } catch (error) {
        const message = error instanceof StatusError ? error.message : String(error)
        this.event(job, 'Warning', 'FailedCreate', `Error creating: ${message}`)
        // The real controller retries with backoff; so do we, gently.
        this.timer(
          tracked,
          'backoff',
          Math.min(this.backoffBaseMs, 10_000),
          job.metadata!.namespace!,
          job.metadata!.name!
        )
        return
      }
    }
  }

  private writeStatus(job: Job, tracked: Tracking, live: Pod[], outcome: Outcome | undefined) {
    const stamp = nowRfc3339()
    const active = live.filter((pod) => !pod.metadata?.deletionTimestamp)
    const ready = active.filter((pod) =>
      pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
    ).length
    let emitted: Outcome | undefined
    this.api.store.update<Job>('jobs', job.metadata!.namespace, job.metadata!.name!, (target) => {
      const status = (target.status ??= {})
      if (tracked.startedAt !== undefined) status.startTime ??= nowRfc3339(tracked.startedAt)
      status.active = active.length
      status.ready = ready
      status.terminating = live.length - active.length
      status.succeeded = tracked.succeeded
      status.failed = tracked.failed
      status.uncountedTerminatedPods = {}
      if (!outcome) return
      const conditions = (status.conditions ??= [])
      const add = (type: string) => {
        if (conditions.some((c) => c.type === type)) return
        const entry: JobCondition = {
          type,
          status: 'True',
          lastProbeTime: stamp,
          lastTransitionTime: stamp,
          reason: outcome.reason,
          message: outcome.message,
        }
        conditions.push(entry)
      }
      add(outcome.type === 'Failed' ? 'FailureTarget' : 'SuccessCriteriaMet')
      if (live.length === 0) {
        add(outcome.type)
        if (outcome.type === 'Complete') status.completionTime ??= stamp
        status.active = 0
        emitted = outcome
      }
    })
    if (emitted && !finished(job)) {
      const updated = this.api.store.get<Job>('jobs', job.metadata!.namespace, job.metadata!.name!)
      if (emitted.type === 'Complete') this.event(job, 'Normal', 'Completed', 'Job completed')
      else this.event(job, 'Warning', emitted.reason, emitted.message)
      if (updated) this.scheduleTtl(updated, tracked, finished(updated)!)
    }
  }

  /** TTL-after-finished: delete the finished Job (and, in the foreground, its pods). */
  private scheduleTtl(job: Job, tracked: Tracking, done: JobCondition) {
    const ttl = job.spec?.ttlSecondsAfterFinished
    if (ttl === undefined || ttl === null || tracked.timers.has('ttl')) return
    const parsed = Date.parse(done.lastTransitionTime ?? '')
    const finishedAt = tracked.finishedAt ?? (Number.isNaN(parsed) ? Date.now() : parsed)
    const namespace = job.metadata!.namespace!
    const name = job.metadata!.name!
    const timer = setTimeout(
      () => {
        tracked.timers.delete('ttl')
        const current = this.api.store.get<Job>('jobs', namespace, name)
        if (!current || current.metadata?.uid !== tracked.uid) return
        try {
          this.api.deleteObject('jobs', namespace, name, { propagationPolicy: 'Foreground' })
        } catch {
          // Someone deleted it first.
        }
      },
      Math.max(0, finishedAt + ttl * 1000 - Date.now())
    )
    timer.unref()
    tracked.timers.set('ttl', timer)
  }
}
