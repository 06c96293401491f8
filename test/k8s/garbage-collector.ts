/**
 * @module test/k8s/garbage-collector
 *
 * Deletion as the real API server and garbage collector do it: graceful pod deletion (a bound,
 * running pod only gets a `deletionTimestamp`; its kubelet finishes the job), finalizers, and
 * `propagationPolicy` — Background/Foreground delete a Job's pods, Orphan (the default for
 * `batch/v1` Jobs when nothing is sent) keeps them and strips their ownerReferences.
 */
import { badRequest, conflict } from './status.ts'
import type { ObjectStore, StoreEvent } from './store.ts'
import { type KubeObject, type Pod, type Resource, nowRfc3339, RESOURCES } from './types.ts'

export type PropagationPolicy = 'Orphan' | 'Background' | 'Foreground'

export interface DeleteOptions {
  propagationPolicy?: PropagationPolicy
  orphanDependents?: boolean
  gracePeriodSeconds?: number
  preconditions?: { uid?: string; resourceVersion?: string }
  dryRun?: boolean
}

/** DeleteOptions from the query string and/or a `V1DeleteOptions` body (the query wins). */
export const parseDeleteOptions = (query: URLSearchParams, body: unknown): DeleteOptions => {
  const fromBody = (body ?? {}) as DeleteOptions & { dryRun?: string[] }
  const policy = query.get('propagationPolicy') ?? fromBody.propagationPolicy
  if (
    policy !== undefined &&
    policy !== null &&
    !['Orphan', 'Background', 'Foreground'].includes(policy)
  ) {
    throw badRequest(
      `propagationPolicy: Unsupported value: "${policy}": supported values: "Foreground", "Background", "Orphan"`
    )
  }
  const grace = query.get('gracePeriodSeconds') ?? fromBody.gracePeriodSeconds
  const orphan = query.get('orphanDependents') ?? fromBody.orphanDependents
  const options: DeleteOptions = {}
  if (policy) options.propagationPolicy = policy as DeleteOptions['propagationPolicy']
  if (grace !== undefined && grace !== null) options.gracePeriodSeconds = Number(grace)
  if (orphan !== undefined && orphan !== null) options.orphanDependents = String(orphan) === 'true'
  if (fromBody.preconditions) options.preconditions = fromBody.preconditions
  if (query.getAll('dryRun').includes('All') || fromBody.dryRun?.includes('All'))
    options.dryRun = true
  return options
}

const ORPHAN = 'orphan'
const FOREGROUND = 'foregroundDeletion'
const ALL: Resource[] = Object.keys(RESOURCES) as Resource[]

export class GarbageCollector {
  private readonly store: ObjectStore
  private readonly timers = new Set<NodeJS.Immediate>()
  private unsubscribe: (() => void) | undefined

  constructor(store: ObjectStore) {
    this.store = store
  }

  start() {
    this.unsubscribe ??= this.store.subscribe((event) => this.onEvent(event))
  }

  stop() {
    this.unsubscribe?.()
    this.unsubscribe = undefined
    for (const timer of this.timers) clearImmediate(timer)
    this.timers.clear()
  }

  /** The GC works asynchronously, as the real one does: callers see the effects shortly after. */
  private later(work: () => void) {
    const timer = setImmediate(() => {
      this.timers.delete(timer)
      work()
    })
    this.timers.add(timer)
  }

  private dependentsOf(owner: KubeObject): Array<{ resource: Resource; object: KubeObject }> {
    const uid = owner.metadata?.uid
    return ALL.flatMap((resource) =>
      this.store
        .list(resource, owner.metadata?.namespace)
        .filter((object) => object.metadata?.ownerReferences?.some((ref) => ref.uid === uid))
        .map((object) => ({ resource, object }))
    )
  }

  /** Handles `DELETE`; returns the object as the response body (deleted or marked for deletion). */
  delete(
    resource: Resource,
    namespace: string,
    name: string,
    options: DeleteOptions = {}
  ): KubeObject {
    const found = this.store.get(resource, namespace, name)
    if (!found) return this.store.remove(resource, namespace, name) // throws 404
    const uid = found.metadata?.uid
    if (options.preconditions?.uid && options.preconditions.uid !== uid) {
      throw conflict(
        resource,
        name,
        `Precondition failed: UID in precondition: ${options.preconditions.uid}, UID in object meta: ${uid}`
      )
    }
    if (
      options.preconditions?.resourceVersion &&
      options.preconditions.resourceVersion !== found.metadata?.resourceVersion
    ) {
      throw conflict(
        resource,
        name,
        `Precondition failed: ResourceVersion in precondition: ${options.preconditions.resourceVersion}, ResourceVersion in object meta: ${found.metadata?.resourceVersion}`
      )
    }
    if (options.dryRun) return found
    const policy: PropagationPolicy =
      options.propagationPolicy ??
      (options.orphanDependents === true
        ? 'Orphan'
        : options.orphanDependents === false
          ? 'Background'
          : resource === 'jobs'
            ? 'Orphan'
            : 'Background')

    if (resource === 'pods') {
      const pod = found as Pod
      const terminal = pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed'
      const grace =
        !pod.spec?.nodeName || terminal
          ? 0
          : (options.gracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30)
      if (grace > 0 || pod.metadata?.finalizers?.length) {
        const current = pod.metadata?.deletionGracePeriodSeconds
        if (current !== undefined && current <= grace) return pod
        // A bound pod is only marked; its kubelet stops the containers and deletes it for good.
        return this.store.update<Pod>('pods', namespace, name, (p) => {
          p.metadata!.deletionTimestamp = nowRfc3339(Date.now() + grace * 1000)
          p.metadata!.deletionGracePeriodSeconds = grace
        })
      }
    }

    if (found.metadata?.deletionTimestamp && resource !== 'pods') return found
    const finalizers = [...(found.metadata?.finalizers ?? [])]
    if (policy === 'Orphan') finalizers.push(ORPHAN)
    if (policy === 'Foreground') finalizers.push(FOREGROUND)
    if (finalizers.length === 0) {
      const removed = this.store.remove(resource, namespace, name)
      this.later(() => this.deleteDependents(removed))
      return removed
    }
    const marked = this.store.update(resource, namespace, name, (object) => {
      object.metadata!.deletionTimestamp ??= nowRfc3339()
      object.metadata!.deletionGracePeriodSeconds = 0
      object.metadata!.finalizers = finalizers
    })
    if (policy === 'Orphan') this.later(() => this.orphan(marked))
    if (policy === 'Foreground') this.later(() => this.deleteDependents(marked))
    return marked
  }

  private deleteDependents(owner: KubeObject) {
    for (const { resource, object } of this.dependentsOf(owner)) {
      try {
        this.delete(resource, object.metadata!.namespace!, object.metadata!.name!, {
          propagationPolicy: 'Background',
        })
      } catch {
        // Already gone: nothing left to collect.
      }
    }
    this.finishForeground(owner)
  }

  private orphan(owner: KubeObject) {
    const uid = owner.metadata?.uid
    for (const { resource, object } of this.dependentsOf(owner)) {
      this.store.update(
        resource,
        object.metadata!.namespace,
        object.metadata!.name!,
        (dependent) => {
          const refs = dependent.metadata!.ownerReferences!.filter((ref) => ref.uid !== uid)
          if (refs.length) dependent.metadata!.ownerReferences = refs
          else delete dependent.metadata!.ownerReferences
        }
      )
    }
    this.dropFinalizer(owner, ORPHAN)
  }

  private finishForeground(owner: KubeObject) {
    if (!owner.metadata?.finalizers?.includes(FOREGROUND)) return
    if (this.dependentsOf(owner).length === 0) this.dropFinalizer(owner, FOREGROUND)
  }

  private dropFinalizer(owner: KubeObject, finalizer: string) {
    const resource = this.resourceOf(owner)
    const { namespace, name } = owner.metadata!
    const current = this.store.get(resource, namespace, name!)
    if (!current || current.metadata?.uid !== owner.metadata?.uid) return
    this.store.update(resource, namespace, name!, (object) => {
      object.metadata!.finalizers = (object.metadata!.finalizers ?? []).filter(
        (f) => f !== finalizer
      )
    })
  }

  private resourceOf(object: KubeObject): Resource {
    return ALL.find((resource) => RESOURCES[resource].kind === object.kind) ?? 'jobs'
  }

  /** Finishes deletions: an object marked for deletion goes once its last finalizer is gone. */
  private onEvent(event: StoreEvent) {
    const meta = event.object.metadata
    if (event.type === 'DELETED') {
      // A dependent went away: a Foreground owner may now be free to go.
      for (const ref of meta?.ownerReferences ?? []) {
        const resource = ALL.find((r) => RESOURCES[r].kind === ref.kind)
        const owner = resource && this.store.get(resource, meta?.namespace, ref.name)
        if (owner && owner.metadata?.uid === ref.uid) this.later(() => this.finishForeground(owner))
      }
      return
    }
    if (!meta?.deletionTimestamp || meta.finalizers?.length) return
    if (event.resource === 'pods' && (meta.deletionGracePeriodSeconds ?? 0) > 0) return
    this.later(() => {
      const current = this.store.get(event.resource, meta.namespace, meta.name!)
      if (!current || current.metadata?.uid !== meta.uid || current.metadata?.finalizers?.length)
        return
      if (event.resource === 'pods' && (current.metadata?.deletionGracePeriodSeconds ?? 0) > 0)
        return
      this.store.remove(event.resource, meta.namespace, meta.name!)
    })
  }
}
