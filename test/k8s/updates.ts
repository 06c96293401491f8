/**
 * @module test/k8s/updates
 *
 * `PUT`/`PATCH` rules: optimistic concurrency on `metadata.resourceVersion` (409 when stale, 422
 * when a PUT omits it), the main resource never changing `status` and `/status` changing nothing
 * else, server-owned metadata kept, immutable Job fields, and `generation` bumped on spec changes.
 */
import { invalid, staleResourceVersion } from './status.ts'
import { type KubeObject, type Resource, clone } from './types.ts'
import { required } from './validation.ts'

/** Checks the resourceVersion a write was based on (PUT must send one, PATCH may). */
export const checkResourceVersion = (
  resource: Resource,
  name: string,
  current: KubeObject,
  next: KubeObject | undefined,
  requireIt: boolean
) => {
  if (requireIt && !next?.metadata?.resourceVersion) {
    throw invalid(resource, name, [
      {
        ...required('metadata.resourceVersion'),
        message: 'Invalid value: 0x0: must be specified for an update',
      },
    ])
  }
  if (
    next?.metadata?.resourceVersion &&
    next.metadata.resourceVersion !== current.metadata?.resourceVersion
  ) {
    throw staleResourceVersion(resource, name)
  }
}

/** PUT/PATCH: the main resource cannot change status, `/status` can change nothing else. */
export const mergeUpdate = (
  resource: Resource,
  current: KubeObject,
  next: KubeObject,
  statusOnly: boolean
): KubeObject => {
  const base = current as KubeObject & { status?: unknown; spec?: unknown }
  const incoming = next as KubeObject & { status?: unknown; spec?: unknown }
  if (statusOnly) return { ...clone(base), status: clone(incoming.status) } as KubeObject
  const meta = {
    ...clone(incoming.metadata ?? {}),
    name: base.metadata?.name,
    namespace: base.metadata?.namespace,
    uid: base.metadata?.uid,
    creationTimestamp: base.metadata?.creationTimestamp,
    deletionTimestamp: base.metadata?.deletionTimestamp,
    deletionGracePeriodSeconds: base.metadata?.deletionGracePeriodSeconds,
    generation: base.metadata?.generation,
  }
  const merged = {
    ...clone(incoming),
    metadata: meta,
    kind: base.kind,
    apiVersion: base.apiVersion,
  } as KubeObject & {
    status?: unknown
    spec?: Record<string, unknown>
  }
  if ('status' in base) merged.status = clone(base.status)
  else delete merged.status
  const oldSpec = base.spec as Record<string, unknown> | undefined
  if (resource === 'jobs' && oldSpec) {
    for (const field of ['template', 'selector', 'completions', 'completionMode'] as const) {
      if (JSON.stringify(merged.spec?.[field]) !== JSON.stringify(oldSpec[field])) {
        throw invalid('jobs', meta.name ?? '', [
          { reason: 'FieldValueInvalid', message: 'field is immutable', field: `spec.${field}` },
        ])
      }
    }
  }
  if (JSON.stringify(merged.spec) !== JSON.stringify(oldSpec)) {
    merged.metadata!.generation = (base.metadata?.generation ?? 1) + 1
  }
  return merged
}
