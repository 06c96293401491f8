/**
 * @module test/k8s/store
 *
 * The simulated cluster's etcd: objects per resource, one global `resourceVersion` counter and a
 * bounded history of changes. Watches replay from that history, and a request for something older
 * than what is kept is answered with 410 Expired, as the real watch cache does.
 */
import { notFound, alreadyExists } from './status.ts'
import { type KubeObject, type Resource, clone } from './types.ts'

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED'

export interface StoreEvent {
  type: EventType
  resource: Resource
  object: KubeObject
  /** The object before a MODIFIED change (watches need it to tell "left the selector" apart). */
  previous?: KubeObject
  resourceVersion: number
}

export type StoreListener = (event: StoreEvent) => void

const keyOf = (namespace: string | undefined, name: string | undefined) =>
  `${namespace ?? ''}/${name ?? ''}`

export class ObjectStore {
  private readonly objects = new Map<Resource, Map<string, KubeObject>>()
  private readonly listeners = new Set<StoreListener>()
  private readonly queue: StoreEvent[] = []
  private history: StoreEvent[] = []
  private counter = 0
  /** Newest resourceVersion whose event was dropped from the history (0: nothing dropped). */
  private compactedThrough = 0
  private dispatching = false
  historyLimit: number

  constructor(historyLimit = 1000) {
    this.historyLimit = historyLimit
  }

  /** The newest resourceVersion handed out. */
  get resourceVersion(): number {
    return this.counter
  }

  /** Oldest resourceVersion a watch may still start from. */
  get oldestWatchable(): number {
    return this.compactedThrough
  }

  private bucket(resource: Resource): Map<string, KubeObject> {
    let bucket = this.objects.get(resource)
    if (!bucket) this.objects.set(resource, (bucket = new Map()))
    return bucket
  }

  get<T extends KubeObject>(resource: Resource, namespace: string | undefined, name: string) {
    const found = this.bucket(resource).get(keyOf(namespace, name))
    return found ? (clone(found) as T) : undefined
  }

  /** Objects of a resource, in one namespace or all, sorted by namespace then name. */
  list<T extends KubeObject>(resource: Resource, namespace?: string): T[] {
    return [...this.bucket(resource).entries()]
      .filter(([, object]) => namespace === undefined || object.metadata?.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, object]) => clone(object) as T)
  }

  /** Stores a new object (already defaulted and validated); 409 if the name is taken. */
  insert<T extends KubeObject>(resource: Resource, object: T): T {
    const meta = object.metadata ?? {}
    const key = keyOf(meta.namespace, meta.name)
    if (this.bucket(resource).has(key)) throw alreadyExists(resource, meta.name ?? '')
    return this.commit(resource, 'ADDED', key, object)
  }

  /** Replaces a stored object wholesale (no concurrency check here; callers do that). */
  replace<T extends KubeObject>(resource: Resource, object: T): T {
    const meta = object.metadata ?? {}
    const key = keyOf(meta.namespace, meta.name)
    if (!this.bucket(resource).has(key)) throw notFound(resource, meta.name ?? '')
    return this.commit(resource, 'MODIFIED', key, object)
  }

  /** Read–modify–write for in-process controllers; writes (and notifies) only on a real change. */
  update<T extends KubeObject>(
    resource: Resource,
    namespace: string | undefined,
    name: string,
    mutate: (object: T) => void
  ): T {
    const current = this.get<T>(resource, namespace, name)
    if (!current) throw notFound(resource, name)
    const next = clone(current)
    mutate(next)
    if (JSON.stringify(next) === JSON.stringify(current)) return current
    return this.replace(resource, next)
  }

  /** Removes an object for good; the DELETED event carries a fresh resourceVersion. */
  remove<T extends KubeObject>(resource: Resource, namespace: string | undefined, name: string): T {
    const key = keyOf(namespace, name)
    const found = this.bucket(resource).get(key)
    if (!found) throw notFound(resource, name)
    const removed = this.commit(resource, 'DELETED', key, clone(found) as T)
    this.bucket(resource).delete(key)
    return removed
  }

  private commit<T extends KubeObject>(
    resource: Resource,
    type: EventType,
    key: string,
    object: T
  ): T {
    const stored = clone(object)
    const previous = type === 'MODIFIED' ? this.bucket(resource).get(key) : undefined
    this.counter += 1
    stored.metadata = { ...stored.metadata, resourceVersion: String(this.counter) }
    if (type !== 'DELETED') this.bucket(resource).set(key, stored)
    const event: StoreEvent = { type, resource, object: stored, resourceVersion: this.counter }
    if (previous) event.previous = previous
    this.history.push(event)
    if (this.history.length > this.historyLimit) this.compact(this.historyLimit)
    this.queue.push(event)
    this.dispatch()
    return clone(stored)
  }

  /**
   * Listeners may write to the store while being notified; queueing keeps every listener seeing
   * events in resourceVersion order anyway.
   */
  private dispatch() {
    if (this.dispatching) return
    this.dispatching = true
    try {
      for (let event = this.queue.shift(); event; event = this.queue.shift()) {
        for (const listener of [...this.listeners]) {
          try {
            listener(event)
          } catch (error) {
            console.error('[k8s-sim] store listener failed', error)
          }
        }
      }
    } finally {
      this.dispatching = false
    }
  }

  /**
   * Events newer than `resourceVersion`, or `undefined` when some of them were already dropped
   * (the caller answers 410 Expired).
   */
  eventsSince(resourceVersion: number): StoreEvent[] | undefined {
    if (resourceVersion < this.compactedThrough) return undefined
    return this.history.filter((event) => event.resourceVersion > resourceVersion)
  }

  /** Drops all but the newest `keep` history entries (tests use it to force 410 Expired). */
  compact(keep = 0) {
    const dropped = this.history.slice(0, Math.max(0, this.history.length - keep))
    if (dropped.length === 0) return
    this.compactedThrough = dropped[dropped.length - 1]!.resourceVersion
    this.history = this.history.slice(dropped.length)
  }

  /** Synchronous notification of every change, in order. Returns the unsubscribe function. */
  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
}
