/**
 * @module test/k8s/pod-status
 *
 * Builders for the `status` a kubelet writes (conditions, container states, phase), shaped like
 * a real kubelet's so watchers see exactly the fields they will see in a cluster.
 */
import type {
  V1ContainerState,
  V1ContainerStatus,
  V1Pod,
  V1PodCondition,
  V1PodStatus,
} from '@kubernetes/client-node'

type ConditionType =
  | 'PodScheduled'
  | 'PodReadyToStartContainers'
  | 'Initialized'
  | 'ContainersReady'
  | 'Ready'
  | 'DisruptionTarget'

/** Sets a pod condition, keeping `lastTransitionTime` when the status does not change. */
export const setCondition = (
  status: V1PodStatus,
  type: ConditionType,
  value: boolean,
  reason?: string,
  message?: string
) => {
  const conditions = status.conditions ?? []
  const existing = conditions.find((condition) => condition.type === type)
  const next: V1PodCondition = {
    type,
    status: value ? 'True' : 'False',
    lastTransitionTime:
      existing && existing.status === (value ? 'True' : 'False') && existing.lastTransitionTime
        ? existing.lastTransitionTime
        : new Date(),
    ...(reason ? { reason } : {}),
    ...(message ? { message } : {}),
  }
  status.conditions = [...conditions.filter((condition) => condition !== existing), next]
}

const ORDER: ConditionType[] = [
  'DisruptionTarget',
  'PodReadyToStartContainers',
  'Initialized',
  'Ready',
  'ContainersReady',
  'PodScheduled',
]

/** Real kubelets list conditions in a fixed order; keep it so diffs stay readable. */
export const sortConditions = (status: V1PodStatus) => {
  status.conditions?.sort(
    (a, b) => ORDER.indexOf(a.type as ConditionType) - ORDER.indexOf(b.type as ConditionType)
  )
}

/** Ready and ContainersReady together, with the kubelet's reasons. */
export const setReadiness = (
  status: V1PodStatus,
  pod: V1Pod,
  ready: boolean,
  terminalReason?: string
) => {
  const names = (pod.spec?.containers ?? []).map((container) => container.name)
  const reason = ready ? undefined : (terminalReason ?? 'ContainersNotReady')
  const message =
    ready || terminalReason ? undefined : `containers with unready status: [${names.join(' ')}]`
  setCondition(status, 'Ready', ready, reason, message)
  setCondition(status, 'ContainersReady', ready, reason, message)
  sortConditions(status)
}

/** One status entry per container; the first gets `state`, the others stay `ContainerCreating`. */
export const containerStatuses = (
  pod: V1Pod,
  state: V1ContainerState,
  extra: { ready: boolean; started: boolean; containerID?: string }
): V1ContainerStatus[] =>
  (pod.spec?.containers ?? []).map((container, index) => ({
    name: container.name,
    image: container.image ?? '',
    imageID: '',
    ...(index === 0 && extra.containerID ? { containerID: extra.containerID } : {}),
    ready: index === 0 ? extra.ready : false,
    restartCount: 0,
    started: index === 0 ? extra.started : false,
    state: index === 0 ? state : { waiting: { reason: 'ContainerCreating' } },
    lastState: {},
  }))

/** Init containers are not run; they are reported as having completed at once. */
export const completedInitContainers = (pod: V1Pod, at: Date): V1ContainerStatus[] | undefined =>
  pod.spec?.initContainers?.map((container) => ({
    name: container.name,
    image: container.image ?? '',
    imageID: '',
    ready: true,
    restartCount: 0,
    started: false,
    state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: at, finishedAt: at } },
    lastState: {},
  }))
