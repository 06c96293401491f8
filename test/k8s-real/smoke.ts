/**
 * @module test/k8s-real/smoke
 *
 * Smoke test of the real-API-server tier (`node test/k8s-real/smoke.ts`, after build.sh): starts
 * the control plane from control-plane.ts and drives it with @kubernetes/client-node the way the
 * bridge will: the bridge user is denied Job creation until a namespaced Role + RoleBinding
 * (shared/notes/kubernetes.md §9) grant it; then a Job is created, the real job controller creates
 * its Pod, and a Background delete lets the garbage collector remove the Pod. There is no kubelet,
 * so the Pod stays Pending; only API objects are checked. Prints each step; exits non-zero on
 * failure.
 */
import {
  ApiException,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node'
import type { V1Job, V1Pod } from '@kubernetes/client-node'
import { startControlPlane } from './control-plane.ts'
import type { ControlPlane } from './control-plane.ts'

const NAMESPACE = 'ferry-sessions'
const JOB_NAME = 'mcp-smoke-1'
const WAIT_MS = 30_000

const t0 = Date.now()
const step = (text: string) =>
  console.log(`[smoke ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${text}`)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` every 50 ms until it returns a value other than undefined, or fails. */
const waitFor = async <T>(what: string, check: () => Promise<T | undefined>): Promise<T> => {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() >= deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`)
    await sleep(50)
  }
}

/** The HTTP status of a rejected client call (throws anything that is not an ApiException). */
const statusOf = async (call: Promise<unknown>): Promise<number> => {
  try {
    await call
    return 200
  } catch (error) {
    if (error instanceof ApiException) return error.code
    throw error
  }
}

const reasonOf = (error: unknown): string => {
  if (error instanceof ApiException && typeof error.body === 'string') {
    try {
      return `${error.code} ${JSON.parse(error.body).reason}: ${JSON.parse(error.body).message}`
    } catch {
      return `${error.code} ${error.body}`
    }
  }
  return error instanceof Error ? error.message : String(error)
}

const check = (condition: boolean, text: string) => {
  if (!condition) throw new Error(`check failed: ${text}`)
  step(`ok: ${text}`)
}

const jobManifest = (name: string): V1Job => ({
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: { name, labels: { 'app.kubernetes.io/name': 'mcp-session' } },
  spec: {
    backoffLimit: 0,
    ttlSecondsAfterFinished: 300,
    template: {
      metadata: { labels: { 'app.kubernetes.io/name': 'mcp-session' } },
      spec: {
        restartPolicy: 'Never',
        automountServiceAccountToken: false,
        containers: [{ name: 'main', image: 'busybox:1.36', command: ['sleep', '3600'] }],
      },
    },
  },
})

const main = async () => {
  step('starting control plane (etcd, kube-apiserver, kube-controller-manager)')
  let plane: ControlPlane | undefined
  // On Ctrl-C or `timeout`, exit through process.exit so control-plane.ts's exit hook kills etcd,
  // kube-apiserver and kube-controller-manager and removes their temp dir.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`[smoke] ${signal}: stopping`)
      process.exit(130)
    })
  }
  try {
    plane = await startControlPlane({ bridgeNamespace: NAMESPACE, log: step })
    const { timings } = plane
    step(
      `control plane up: ${plane.server} (etcd ${timings.etcdMs} ms, apiserver ready ` +
        `${timings.apiserverReadyMs} ms, controllers ${timings.controllersReadyMs} ms, ` +
        `total ${timings.totalMs} ms)`
    )

    const adminKc = new KubeConfig()
    adminKc.loadFromFile(plane.kubeconfigFor('admin', NAMESPACE))
    const bridgeKc = new KubeConfig()
    bridgeKc.loadFromFile(plane.kubeconfigFor('bridge', NAMESPACE))
    const adminCore = adminKc.makeApiClient(CoreV1Api)
    const adminRbac = adminKc.makeApiClient(RbacAuthorizationV1Api)
    const bridgeBatch = bridgeKc.makeApiClient(BatchV1Api)
    const bridgeCore = bridgeKc.makeApiClient(CoreV1Api)

    step(`admin: create namespace ${NAMESPACE}`)
    await adminCore.createNamespace({ body: { metadata: { name: NAMESPACE } } })
    await waitFor(`service account ${NAMESPACE}/default`, async () =>
      (await statusOf(
        adminCore.readNamespacedServiceAccount({ name: 'default', namespace: NAMESPACE })
      )) === 200
        ? true
        : undefined
    )
    step('ok: serviceaccount controller created the default service account')

    step(`bridge (${plane.bridgeUser}): create Job before any RBAC`)
    const denied = await statusOf(
      bridgeBatch.createNamespacedJob({ namespace: NAMESPACE, body: jobManifest(JOB_NAME) })
    )
    check(denied === 403, `Job create without RBAC is 403 (got ${denied})`)

    step('admin: create Role ferry-bridge + RoleBinding to the bridge service account')
    await adminRbac.createNamespacedRole({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'ferry-bridge' },
        rules: [
          {
            apiGroups: ['batch'],
            resources: ['jobs'],
            verbs: ['create', 'get', 'list', 'watch', 'delete'],
          },
          { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
        ],
      },
    })
    await adminRbac.createNamespacedRoleBinding({
      namespace: NAMESPACE,
      body: {
        metadata: { name: 'ferry-bridge' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'ferry-bridge' },
        subjects: [{ kind: 'ServiceAccount', name: 'ferry-bridge', namespace: NAMESPACE }],
      },
    })

    step(`bridge: create Job ${JOB_NAME}`)
    // The RBAC authorizer reads Roles from an informer cache: allow it a moment to catch up.
    const createdAt = Date.now()
    const job = await waitFor('the RoleBinding to take effect', async () => {
      try {
        return await bridgeBatch.createNamespacedJob({
          namespace: NAMESPACE,
          body: jobManifest(JOB_NAME),
        })
      } catch (error) {
        if (error instanceof ApiException && error.code === 403) return undefined
        throw error
      }
    })
    const uid = job.metadata?.uid
    check(typeof uid === 'string', `Job created (uid ${uid}) in ${Date.now() - createdAt} ms`)
    check(
      job.spec?.selector?.matchLabels?.['controller-uid'] === uid,
      'API server defaulted the Job selector to controller-uid'
    )
    const read = await bridgeBatch.readNamespacedJob({ name: JOB_NAME, namespace: NAMESPACE })
    check(read.metadata?.uid === uid, 'bridge can read the Job back')
    const duplicate = await statusOf(
      bridgeBatch.createNamespacedJob({ namespace: NAMESPACE, body: jobManifest(JOB_NAME) })
    )
    check(duplicate === 409, `duplicate Job create is 409 (got ${duplicate})`)

    const labelSelector = `job-name=${JOB_NAME}`
    const pod = await waitFor<V1Pod>('the job controller to create a Pod', async () => {
      const pods = await bridgeCore.listNamespacedPod({ namespace: NAMESPACE, labelSelector })
      return pods.items[0]
    })
    const podName = pod.metadata?.name ?? ''
    check(
      pod.metadata?.ownerReferences?.[0]?.uid === uid,
      `job controller created Pod ${podName} owned by the Job (${Date.now() - createdAt} ms ` +
        `after create, phase ${pod.status?.phase}, no kubelet so it stays unscheduled)`
    )
    const podDelete = await statusOf(
      bridgeCore.deleteNamespacedPod({ name: podName, namespace: NAMESPACE })
    )
    check(podDelete === 403, `bridge may not delete pods (got ${podDelete})`)
    const secrets = await statusOf(bridgeCore.listNamespacedSecret({ namespace: NAMESPACE }))
    check(secrets === 403, `bridge may not list secrets (got ${secrets})`)

    step(`bridge: delete Job ${JOB_NAME} with propagationPolicy Background`)
    const deletedAt = Date.now()
    await bridgeBatch.deleteNamespacedJob({
      name: JOB_NAME,
      namespace: NAMESPACE,
      propagationPolicy: 'Background',
    })
    await waitFor('the Job to be gone', async () =>
      (await statusOf(bridgeBatch.readNamespacedJob({ name: JOB_NAME, namespace: NAMESPACE }))) ===
      404
        ? true
        : undefined
    )
    step(`ok: Job gone after ${Date.now() - deletedAt} ms`)
    await waitFor('the garbage collector to delete the Pod', async () => {
      const pods = await bridgeCore.listNamespacedPod({ namespace: NAMESPACE, labelSelector })
      return pods.items.length === 0 ? true : undefined
    })
    step(`ok: garbage collector deleted the Pod ${Date.now() - deletedAt} ms after the delete`)
  } catch (error) {
    console.error(`[smoke] FAILED: ${reasonOf(error)}`)
    if (error instanceof Error && error.stack) console.error(error.stack)
    process.exitCode = 1
  } finally {
    if (plane) {
      step('stopping control plane')
      await plane.stop()
    }
  }
  step(process.exitCode ? 'smoke test FAILED' : 'smoke test passed')
}

await main()
