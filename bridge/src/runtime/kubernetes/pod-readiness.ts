/**
 * @module
 * Reads a session pod's status as the runtime needs it: ready (with its IP), failed
 * for a reason worth telling the client, or still on its way. Pure, so every
 * failure mode is testable without a cluster.
 */
import type { V1Pod } from '@kubernetes/client-node'
import type { WorkloadFailure } from '../runtime.ts'

export type PodState =
  | { kind: 'ready'; podIP: string }
  | { kind: 'failed'; failure: WorkloadFailure; message: string }
  | { kind: 'pending'; unschedulable?: string }

const IMAGE_PULL = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
])
const CONFIG = new Set(['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError'])

const podEnded = (status: NonNullable<V1Pod['status']>): PodState => ({
  kind: 'failed',
  failure: 'exited',
  message: `the pod ${status.phase === 'Failed' ? 'failed' : 'completed'}${status.reason ? ` (${status.reason}${status.message ? `: ${status.message}` : ''})` : ''} before it was ready`,
})

export const podState = (pod: V1Pod): PodState => {
  const status = pod.status ?? {}
  // The pod's own reason (Evicted, DeadlineExceeded …) says more than its killed container's.
  if (status.phase === 'Failed' && status.reason) return podEnded(status)
  const statuses = [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])]
  for (const container of statuses) {
    const waiting = container.state?.waiting
    if (waiting?.reason && IMAGE_PULL.has(waiting.reason)) {
      const image = container.image ? ` ${container.image}` : ''
      return {
        kind: 'failed',
        failure: 'image_pull',
        message: `the image${image} cannot be pulled (${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''})`,
      }
    }
    if (waiting?.reason && CONFIG.has(waiting.reason)) {
      return {
        kind: 'failed',
        failure: 'config',
        message: `the container ${container.name} cannot be created (${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''})`,
      }
    }
    const terminated = container.state?.terminated
    const isInit = status.initContainerStatuses?.includes(container) ?? false
    if (terminated && !(isInit && terminated.exitCode === 0)) {
      if (terminated.reason === 'OOMKilled') {
        return {
          kind: 'failed',
          failure: 'oom',
          message: `the container ${container.name} was OOM-killed (exit code ${terminated.exitCode}) before it was ready`,
        }
      }
      return {
        kind: 'failed',
        failure: 'exited',
        message: `the container ${container.name} exited with code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ''} before it was ready`,
      }
    }
  }
  if (status.phase === 'Failed' || status.phase === 'Succeeded') return podEnded(status)
  const conditions = status.conditions ?? []
  const ready = conditions.some((c) => c.type === 'Ready' && c.status === 'True')
  if (ready && status.podIP) return { kind: 'ready', podIP: status.podIP }
  const scheduled = conditions.find((c) => c.type === 'PodScheduled')
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
    return { kind: 'pending', unschedulable: scheduled.message ?? 'no node can run the pod' }
  }
  return { kind: 'pending' }
}
