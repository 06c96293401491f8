/**
 * @module test/k8s/types
 *
 * Wire shapes of the objects the simulated cluster stores. They are derived from the
 * `@kubernetes/client-node` model classes so field names stay exactly the real ones, but with
 * every `Date` turned into the RFC 3339 string that travels over HTTP: the fake API server keeps
 * JSON, never client-side model instances.
 */
import type {
  CoreV1Event,
  V1ConfigMap,
  V1Job,
  V1ObjectMeta,
  V1OwnerReference,
  V1Pod,
  V1Secret,
} from '@kubernetes/client-node'

/** `T` as it looks on the wire: dates become strings, everything else stays as is. */
export type Wire<T> = T extends Date
  ? string
  : T extends Array<infer U>
    ? Array<Wire<U>>
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T

export type ObjectMeta = Wire<V1ObjectMeta>
export type OwnerReference = Wire<V1OwnerReference>
export type Job = Wire<V1Job>
export type Pod = Wire<V1Pod>
export type KubeEvent = Wire<CoreV1Event>
export type Secret = Wire<V1Secret>
export type ConfigMap = Wire<V1ConfigMap>

/** What every stored object has in common. */
export interface KubeObject {
  apiVersion?: string
  kind?: string
  metadata?: ObjectMeta
}

/** The resources the fake serves (their URL plural). */
export type Resource = 'jobs' | 'pods' | 'events' | 'secrets' | 'configmaps'

/** Per-resource facts the server needs: API group, kind, and whether it is namespaced. */
export const RESOURCES: Record<Resource, { group: string; version: string; kind: string }> = {
  jobs: { group: 'batch', version: 'v1', kind: 'Job' },
  pods: { group: '', version: 'v1', kind: 'Pod' },
  events: { group: '', version: 'v1', kind: 'Event' },
  secrets: { group: '', version: 'v1', kind: 'Secret' },
  configmaps: { group: '', version: 'v1', kind: 'ConfigMap' },
}

/** `apiVersion` of a resource: `batch/v1` or `v1`. */
export const apiVersionOf = (resource: Resource): string => {
  const { group, version } = RESOURCES[resource]
  return group ? `${group}/${version}` : version
}

/** The qualified resource the real server prints in messages: `jobs.batch`, `pods`. */
export const qualifiedResource = (resource: Resource): string => {
  const { group } = RESOURCES[resource]
  return group ? `${resource}.${group}` : resource
}

/** `Job.batch`, `Pod`: how the real server names a kind in "is invalid" messages. */
export const qualifiedKind = (resource: Resource): string => {
  const { group, kind } = RESOURCES[resource]
  return group ? `${kind}.${group}` : kind
}

/** Current time the way the API server writes it: RFC 3339, second precision. */
export const nowRfc3339 = (at = Date.now()): string =>
  new Date(Math.floor(at / 1000) * 1000).toISOString().replace('.000Z', 'Z')

/** A structured clone for JSON data (objects leave and enter the store only as copies). */
export const clone = <T>(value: T): T => structuredClone(value)
