/**
 * @module test/k8s/events
 *
 * `core/v1` Event bodies as controllers and kubelets emit them (FailedScheduling, Failed,
 * BackOff, SuccessfulCreate, BackoffLimitExceeded …), so code that surfaces readable failure
 * reasons from Events can be tested.
 */
import { randomBytes } from 'node:crypto'
import { type KubeEvent, type KubeObject, nowRfc3339 } from './types.ts'

export type EventType = 'Normal' | 'Warning'

/** An Event about `involved`, named `<object>.<16 hex>` like client-go's recorder does. */
export const buildEvent = (
  involved: KubeObject,
  type: EventType,
  reason: string,
  message: string,
  source: { component: string; host?: string; fieldPath?: string }
): KubeEvent => {
  const { component, host, fieldPath } = source
  const now = nowRfc3339()
  const meta = involved.metadata ?? {}
  return {
    metadata: { name: `${meta.name}.${randomBytes(8).toString('hex')}`, namespace: meta.namespace },
    involvedObject: {
      kind: involved.kind,
      namespace: meta.namespace,
      name: meta.name,
      uid: meta.uid,
      apiVersion: involved.apiVersion,
      resourceVersion: meta.resourceVersion,
      ...(fieldPath ? { fieldPath } : {}),
    },
    reason,
    message,
    source: { component, ...(host ? { host } : {}) },
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
    type,
    reportingComponent: component,
    reportingInstance: host ?? '',
  }
}
