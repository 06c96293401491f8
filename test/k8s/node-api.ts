/**
 * @module test/k8s/node-api
 *
 * The API calls a kubelet and scheduler make, through `@kubernetes/client-node`: bind a pod,
 * read-modify-write `pods/status` (retried on 409 with a fresh read, serialised per pod), the
 * final `delete gracePeriodSeconds=0`, Secret/ConfigMap reads for the environment, and Events.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import {
  ApiException,
  type CoreV1Api,
  type CoreV1Event,
  type V1Pod,
  type V1PodStatus,
} from '@kubernetes/client-node'
import { buildEvent, type EventType } from './events.ts'

/** The pod a call is about; `chain` (when present) serialises status writes for it. */
export interface PodRef {
  uid: string
  namespace: string
  name: string
  chain?: Promise<void>
}

export const codeOf = (error: unknown): number | undefined =>
  error instanceof ApiException
    ? error.code
    : (error as { statusCode?: number } | undefined)?.statusCode

export class NodeApi {
  private readonly core: CoreV1Api
  private readonly nodeName: string
  private readonly events: boolean
  private closed = false

  constructor(core: CoreV1Api, nodeName: string, events = true) {
    this.core = core
    this.nodeName = nodeName
    this.events = events
  }

  /** After this, writes stop being retried and Events are no longer sent. */
  close() {
    this.closed = true
  }

  bind(pod: PodRef): Promise<unknown> {
    const { namespace, name } = pod
    return this.core.createNamespacedPodBinding({
      namespace,
      name,
      body: {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name, namespace },
        target: { apiVersion: 'v1', kind: 'Node', name: this.nodeName },
      },
    })
  }

  /** Applies `mutate` to a fresh copy of the pod's status and writes it back. */
  writeStatus(pod: PodRef, mutate: (status: V1PodStatus, current: V1Pod) => void): Promise<void> {
    const work = async () => {
      for (let attempt = 0; attempt < 20 && !this.closed; attempt++) {
        try {
          const where = { name: pod.name, namespace: pod.namespace }
          const current = await this.core.readNamespacedPodStatus(where)
          if (current.metadata?.uid !== pod.uid) return
          current.status ??= {}
          mutate(current.status, current)
          await this.core.replaceNamespacedPodStatus({ ...where, body: current })
          return
        } catch (error) {
          const code = codeOf(error)
          if (code === 404 || this.closed) return
          // 409: someone else wrote in between; read again at once. Anything else: back off.
          if (code !== 409) await sleep(Math.min(50 * 2 ** attempt, 1000))
        }
      }
    }
    if (pod.chain === undefined) return work()
    pod.chain = pod.chain.then(work, work)
    return pod.chain
  }

  /** The kubelet's last word on a pod: remove it for good once its containers are stopped. */
  deleteForGood(pod: PodRef): Promise<unknown> {
    return this.core.deleteNamespacedPod({
      name: pod.name,
      namespace: pod.namespace,
      gracePeriodSeconds: 0,
      // A real API server reads delete options from the body when there is one and then
      // ignores the query, so the grace period goes in the body too.
      body: { gracePeriodSeconds: 0, preconditions: { uid: pod.uid } },
    })
  }

  /** Decoded data of a Secret or ConfigMap, `undefined` when it does not exist. */
  async readData(
    kind: 'secret' | 'configMap',
    namespace: string,
    name: string
  ): Promise<Record<string, string> | undefined> {
    try {
      if (kind === 'secret') {
        const secret = await this.core.readNamespacedSecret({ name, namespace })
        return Object.fromEntries(
          Object.entries(secret.data ?? {}).map(([key, value]) => [
            key,
            Buffer.from(value, 'base64').toString('utf8'),
          ])
        )
      }
      const map = await this.core.readNamespacedConfigMap({ name, namespace })
      return { ...(map.data ?? {}) }
    } catch (error) {
      if (codeOf(error) === 404) return undefined
      throw error
    }
  }

  /** Posts an Event about a pod; best effort, as in a real cluster. */
  async event(
    pod: PodRef,
    type: EventType,
    reason: string,
    message: string,
    component: 'kubelet' | 'default-scheduler',
    fieldPath?: string
  ): Promise<void> {
    if (!this.events || this.closed) return
    const involved = {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: { name: pod.name, namespace: pod.namespace, uid: pod.uid },
    }
    const body = buildEvent(involved, type, reason, message, {
      component,
      ...(component === 'kubelet' ? { host: this.nodeName } : {}),
      ...(fieldPath ? { fieldPath } : {}),
    })
    try {
      await this.core.createNamespacedEvent({
        namespace: pod.namespace,
        body: body as unknown as CoreV1Event,
      })
    } catch {
      // Events are best effort.
    }
  }
}
