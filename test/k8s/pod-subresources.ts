/**
 * @module test/k8s/pod-subresources
 *
 * `pods/binding` (what the scheduler posts to place a pod on a node; 409 when already bound or
 * being deleted) and `pods/log` (text from the kubelet, `tailLines`/`limitBytes`, and the real
 * 400s for an unknown container or one that has not started).
 */
import { badRequest, invalid, notFound, StatusError } from './status.ts'
import type { ObjectStore } from './store.ts'
import { type Pod, nowRfc3339 } from './types.ts'
import { required } from './validation.ts'

/** Where `pods/log` text comes from (the kubelet simulator, when wired by the cluster). */
export type LogSource = (namespace: string, pod: string, container: string) => string | undefined

/** `POST pods/{name}/binding`: what the scheduler does to place a pod on a node. */
export const bindPod = (store: ObjectStore, namespace: string, name: string, body: unknown) => {
  const target = (body as { target?: { kind?: string; name?: string } } | undefined)?.target
  if (!target?.name) throw invalid('pods', name, [required('target.name')])
  const pod = store.get<Pod>('pods', namespace, name)
  if (!pod) throw notFound('pods', name)
  if (pod.metadata?.deletionTimestamp) {
    throw new StatusError(
      409,
      'Conflict',
      `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is being deleted, cannot be assigned to a host`
    )
  }
  if (pod.spec?.nodeName) {
    throw new StatusError(
      409,
      'Conflict',
      `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is already assigned to node "${pod.spec.nodeName}"`
    )
  }
  store.update<Pod>('pods', namespace, name, (p) => {
    p.spec!.nodeName = target.name
    const conditions = (p.status!.conditions ?? []).filter((c) => c.type !== 'PodScheduled')
    conditions.push({ type: 'PodScheduled', status: 'True', lastTransitionTime: nowRfc3339() })
    p.status!.conditions = conditions
  })
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 }
}

export const podLog = (
  store: ObjectStore,
  namespace: string,
  name: string,
  query: URLSearchParams,
  logSource: LogSource | undefined
): string => {
  const pod = store.get<Pod>('pods', namespace, name)
  if (!pod) throw notFound('pods', name)
  const names = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map(
    (c) => c.name
  )
  const container = query.get('container') ?? (names.length === 1 ? names[0]! : undefined)
  if (!container) {
    throw badRequest(
      `a container name must be specified for pod ${name}, choose one of: [${names.join(' ')}]`
    )
  }
  if (!names.includes(container))
    throw badRequest(`container ${container} is not valid for pod ${name}`)
  const state = [
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.containerStatuses ?? []),
  ].find((status) => status.name === container)?.state
  if (!state || (!state.running && !state.terminated)) {
    const reason = state?.waiting?.reason ?? 'ContainerCreating'
    throw badRequest(`container "${container}" in pod "${name}" is waiting to start: ${reason}`)
  }
  let text = logSource?.(namespace, name, container) ?? ''
  const tail = query.get('tailLines')
  if (tail !== null) {
    const lines = text.split('\n')
    const trailing = lines[lines.length - 1] === '' ? lines.pop() : undefined
    text =
      lines.slice(Math.max(0, lines.length - Number(tail))).join('\n') +
      (trailing !== undefined && lines.length ? '\n' : '')
  }
  const limitBytes = query.get('limitBytes')
  if (limitBytes !== null) text = Buffer.from(text).subarray(0, Number(limitBytes)).toString('utf8')
  return text
}
