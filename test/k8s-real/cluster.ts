/**
 * @module test/k8s-real/cluster
 *
 * The real-API-server tier as a test cluster: a Kubernetes v1.20.2 control plane
 * (control-plane.ts) set up the way `manifests/base` sets up a real one, plus the kubelet
 * simulator of `test/k8s` playing the node.
 *
 * - `kubectl kustomize manifests/base` is rendered and the objects the bridge's permissions come
 *   from are applied exactly as rendered, with the admin client: both Namespaces, the
 *   `ferry-bridge` and `ferry-session` ServiceAccounts, and the `ferry-bridge` Role and
 *   RoleBinding. The rest (Deployment, Service, Ingress, HPA, PDB, NetworkPolicies, catalog) is
 *   about running the bridge in a cluster, not about what the bridge may do; 1.20 lacks some of
 *   their API versions (`policy/v1` PDB, `autoscaling/v2` HPA) anyway.
 * - The bridge's identity is the control plane's bridge token, whose user is made to be exactly
 *   the RoleBinding's subject (`system:serviceaccount:<ns>:ferry-bridge`): the code under test
 *   gets `kubeconfig` and nothing more, so the suite passing proves the Role is enough.
 * - The kubelet simulator uses the admin token (it is the node: it binds pods through
 *   `pods/binding`, writes `pods/status`, reads Secrets and ConfigMaps, posts Events).
 * - The apiserver's audit log records the bridge user's requests (`requests()`), so tests can
 *   check what the bridge asked for (e.g. `propagationPolicy=Background` on a DELETE) on the real
 *   server too; informers keep a synchronous view of the session namespace's Jobs and Pods.
 *
 * Not in 1.20.2, so not checked here: Pod Security admission (1.22+; the namespaces' `pod-security`
 * labels are inert), `podFailurePolicy` (1.25+, silently dropped), `batch.kubernetes.io/*` labels
 * (1.27+); TTL-after-finished is an alpha gate, enabled by control-plane.ts.
 */
import { execFile } from 'node:child_process'
import { closeSync, openSync, readSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import {
  ApiException,
  BatchV1Api,
  CoreV1Api,
  type Informer,
  type KubernetesObject,
  KubernetesObjectApi,
  KubeConfig,
  type ObjectCache,
  type V1Job,
  type V1Pod,
  makeInformer,
} from '@kubernetes/client-node'
import { parseAllDocuments } from 'yaml'
import { KubeletSimulator, type KubeletSimulatorOptions } from '../k8s/kubelet-simulator.ts'
import type { SimulatedProcess } from '../k8s/kubelet-simulator.ts'
import type { Job, Pod } from '../k8s/types.ts'
import { K8S_VERSION, startControlPlane, type ControlPlane } from './control-plane.ts'

/** `manifests/base` of this work tree. */
export const MANIFESTS_BASE = fileURLToPath(new URL('../../manifests/base', import.meta.url))

/** One request as the apiserver's audit log tells it (the shape of the fake server's log). */
export interface AuditedRequest {
  method: string
  path: string
  verb: string | undefined
  resource: string | undefined
  subresource: string | undefined
  namespace: string | undefined
  name: string | undefined
  query: Record<string, string>
  user: string | undefined
  /** The response's status code (0 until the request completed). */
  status: number
}

export interface RealClusterOptions {
  /** Kustomize directory to render (default `manifests/base`). */
  manifests?: string
  kubelet?: Omit<KubeletSimulatorOptions, 'kubeconfig'>
  /** Progress lines (default: silent). */
  log?: (line: string) => void
}

export interface RealCluster {
  plane: ControlPlane
  /** The namespace of session Jobs: that of the rendered Role (`ferry-sessions`). */
  namespace: string
  /** The bridge's user, the RoleBinding's subject. */
  user: string
  /** The bridge's config: its token only has what the rendered Role grants. */
  kubeconfig: KubeConfig
  /** `system:masters` (the kubelet simulator's and the test's own view). */
  adminKubeconfig: KubeConfig
  kubelet: KubeletSimulator
  /** `Kind namespace/name` of every object applied from the rendered manifests. */
  applied: string[]
  /** One line naming the cluster. */
  description: string
  /** Jobs in `namespace` as the informer last saw them (wire shape: dates are strings). */
  jobs(): Job[]
  /** Pods in `namespace` as the informer last saw them. */
  pods(): Pod[]
  /** Resolves once `jobs()` and `pods()` are at least as new as a list made now (bounded). */
  synced(timeoutMs?: number): Promise<void>
  /** The bridge user's requests since the last `clearRequests()`, from the audit log. */
  requests(): AuditedRequest[]
  clearRequests(): void
  /** Jobs and pods in any namespace (`namespace/name`, admin list) and pod processes. */
  orphans(): Promise<{ jobs: string[]; pods: string[]; processes: SimulatedProcess[] }>
  /** Deletes every Job (Background) and pod (grace 0) in any namespace. */
  clean(): Promise<void>
  stop(): Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const codeOf = (error: unknown) => (error instanceof ApiException ? error.code : undefined)

/** Client models carry `Date`s; the tests read objects as they travel (RFC 3339 strings). */
const toWire = <T>(object: unknown): T => JSON.parse(JSON.stringify(object)) as T

/** Renders a kustomization with `kubectl kustomize` (kubectl 1.20's v2.0.3 and newer alike). */
export const renderManifests = async (dir: string): Promise<KubernetesObject[]> => {
  let stdout: string
  try {
    ;({ stdout } = await promisify(execFile)('kubectl', ['kustomize', dir], {
      maxBuffer: 16 << 20,
    }))
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'kubectl not found (apt-get install kubernetes-client)'
        : (error as Error).message
    throw new Error(`cannot render ${dir}: ${reason}`, { cause: error })
  }
  return parseAllDocuments(stdout)
    .map((document) => document.toJSON() as KubernetesObject | null)
    .filter((object): object is KubernetesObject => object !== null)
}

const describeObject = (object: KubernetesObject) =>
  `${object.kind} ${object.metadata?.namespace ? `${object.metadata.namespace}/` : ''}${object.metadata?.name}`

/** The objects that decide what the bridge may do, in the order they must be created. */
const rbacObjects = (objects: KubernetesObject[]) => {
  const pick = (kind: string) => objects.filter((object) => object.kind === kind)
  const roles = pick('Role').filter((role) => role.metadata?.name === 'ferry-bridge')
  const bindings = pick('RoleBinding').filter((b) => b.metadata?.name === 'ferry-bridge')
  if (roles.length !== 1 || bindings.length !== 1) {
    throw new Error('the manifests must hold exactly one Role and one RoleBinding ferry-bridge')
  }
  const binding = bindings[0] as KubernetesObject & {
    subjects?: Array<{ kind: string; name: string; namespace?: string }>
  }
  const subject = binding.subjects?.find((s) => s.kind === 'ServiceAccount')
  if (subject?.name !== 'ferry-bridge' || !subject.namespace) {
    throw new Error('the RoleBinding ferry-bridge must bind ServiceAccount ferry-bridge')
  }
  return {
    objects: [...pick('Namespace'), ...pick('ServiceAccount'), ...roles, ...bindings],
    sessionNamespace: roles[0]!.metadata!.namespace!,
    bridgeNamespace: subject.namespace,
  }
}

/** A JSON-lines audit log read incrementally: audit ID → request, in order of first sight. */
class AuditLog {
  private readonly file: string
  private offset = 0
  private partial = ''
  private readonly byId = new Map<string, AuditedRequest>()
  private entries: AuditedRequest[] = []

  constructor(file: string) {
    this.file = file
  }

  read(): AuditedRequest[] {
    let size: number
    try {
      size = statSync(this.file).size
    } catch {
      return this.entries
    }
    if (size > this.offset) {
      const buffer = Buffer.alloc(size - this.offset)
      const fd = openSync(this.file, 'r')
      try {
        readSync(fd, buffer, 0, buffer.length, this.offset)
      } finally {
        closeSync(fd)
      }
      this.offset = size
      const lines = (this.partial + buffer.toString('utf8')).split('\n')
      this.partial = lines.pop() ?? ''
      for (const line of lines) if (line.trim()) this.add(JSON.parse(line) as AuditEvent)
    }
    return this.entries
  }

  clear() {
    this.read()
    this.entries = []
    this.byId.clear()
  }

  private add(event: AuditEvent) {
    let entry = this.byId.get(event.auditID)
    if (!entry) {
      const url = new URL(event.requestURI, 'https://apiserver')
      entry = {
        method: METHODS[event.verb] ?? 'GET',
        path: url.pathname,
        verb: event.verb,
        resource: event.objectRef?.resource,
        subresource: event.objectRef?.subresource,
        namespace: event.objectRef?.namespace,
        name: event.objectRef?.name,
        query: Object.fromEntries(url.searchParams),
        user: event.user?.username,
        status: 0,
      }
      this.byId.set(event.auditID, entry)
      this.entries.push(entry)
    }
    // A create's name is only known once the body was read (Metadata level fills it in).
    entry.name ??= event.objectRef?.name
    if (event.stage === 'ResponseComplete' || event.stage === 'Panic' || !entry.status) {
      entry.status = event.responseStatus?.code ?? entry.status
    }
  }
}

interface AuditEvent {
  auditID: string
  stage: string
  requestURI: string
  verb: string
  user?: { username?: string }
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string }
  responseStatus?: { code?: number }
}

const METHODS: Record<string, string> = {
  create: 'POST',
  delete: 'DELETE',
  deletecollection: 'DELETE',
  update: 'PUT',
  patch: 'PATCH',
}

type Cache<T extends KubernetesObject> = Informer<T> & ObjectCache<T>

const watchCache = async <T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  list: () => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>
): Promise<{ cache: Cache<T>; stop: () => Promise<void> }> => {
  const cache = makeInformer<T>(kc, path, list as never)
  let stopped = false
  // An informer stays stopped after an error; start it again, as a controller would.
  cache.on('error', () => {
    if (!stopped) setTimeout(() => void (stopped || cache.start().catch(() => {})), 300)
  })
  await cache.start()
  return {
    cache,
    stop: async () => {
      stopped = true
      await cache.stop()
    },
  }
}

/** Whether `cached` has caught up with `listed` (nothing older, nothing deleted since). */
const caughtUp = (
  cached: ReadonlyArray<KubernetesObject>,
  listed: { items: KubernetesObject[]; metadata?: { resourceVersion?: string } }
) => {
  const version = (object: KubernetesObject) => Number(object.metadata?.resourceVersion ?? 0)
  const have = new Map(cached.map((object) => [object.metadata?.uid, version(object)]))
  const want = new Set(listed.items.map((object) => object.metadata?.uid))
  if (listed.items.some((object) => (have.get(object.metadata?.uid) ?? -1) < version(object))) {
    return false
  }
  const listVersion = Number(listed.metadata?.resourceVersion ?? 0)
  // Cached but not listed: fine if created after the list, stale if deleted before it.
  return cached.every((object) => want.has(object.metadata?.uid) || version(object) > listVersion)
}

/**
 * Completes the kubelet simulator's last step on a real apiserver. The simulator removes a stopped
 * pod with `DELETE ?gracePeriodSeconds=0` plus a body `{ preconditions: { uid } }`; kube-apiserver
 * (1.20 as later ones) decodes DeleteOptions from the body when there is one and then ignores the
 * query, so the grace period is unset, the pending graceful deletion (the garbage collector's, with
 * the pod's own grace period) stays as it was, and the answer is 200 (observed: the pod stayed).
 * The fake API server reads the query, so the simulator never noticed. Until the simulator sends
 * the grace period in the body, this sends the DELETE it meant (grace period 0 in the body, same
 * UID precondition) for every pod of its node that is being deleted and has no process left.
 */
class DeletionFinisher {
  private readonly core: CoreV1Api
  private readonly kubelet: KubeletSimulator
  private readonly cache: ObjectCache<V1Pod>
  private readonly sent = new Map<string, number>()
  private readonly timer: NodeJS.Timeout

  constructor(core: CoreV1Api, kubelet: KubeletSimulator, cache: ObjectCache<V1Pod>) {
    this.core = core
    this.kubelet = kubelet
    this.cache = cache
    // Pod events start it; a process that ends without one is seen on the next round.
    this.timer = setInterval(() => this.scan(), 200)
  }

  scan() {
    const running = new Set(this.kubelet.processes().map((p) => `${p.namespace}/${p.name}`))
    for (const pod of this.cache.list()) {
      const meta = pod.metadata
      if (!meta?.deletionTimestamp || pod.spec?.nodeName !== this.kubelet.nodeName) continue
      if (running.has(`${meta.namespace}/${meta.name}`)) continue
      const last = this.sent.get(meta.uid!) ?? 0
      if (Date.now() - last < 1_000) continue
      this.sent.set(meta.uid!, Date.now())
      void this.core
        .deleteNamespacedPod({
          name: meta.name!,
          namespace: meta.namespace!,
          body: { gracePeriodSeconds: 0, preconditions: { uid: meta.uid! } },
        })
        .catch(() => {
          // Gone already (404), or another pod by that name by now (409).
        })
    }
    for (const uid of this.sent.keys()) {
      if (!this.cache.list().some((pod) => pod.metadata?.uid === uid)) this.sent.delete(uid)
    }
  }

  stop() {
    clearInterval(this.timer)
  }
}

/**
 * Starts the control plane, applies the RBAC part of the rendered manifests, waits until the
 * bridge's permissions are in effect, and starts the kubelet simulator.
 */
export const startRealCluster = async (options: RealClusterOptions = {}): Promise<RealCluster> => {
  const log = options.log ?? (() => {})
  const manifests = options.manifests ?? MANIFESTS_BASE
  const rendered = rbacObjects(await renderManifests(manifests))
  const namespace = rendered.sessionNamespace
  const plane = await startControlPlane({
    // The token user then is system:serviceaccount:<bridgeNamespace>:ferry-bridge, the
    // RoleBinding's subject.
    bridgeNamespace: rendered.bridgeNamespace,
    log,
    auditPolicy: {
      apiVersion: 'audit.k8s.io/v1',
      kind: 'Policy',
      omitStages: ['RequestReceived'],
      rules: [
        {
          level: 'Metadata',
          users: [`system:serviceaccount:${rendered.bridgeNamespace}:ferry-bridge`],
        },
        { level: 'None' },
      ],
    },
  })
  const stops: Array<() => Promise<void>> = [() => plane.stop()]
  if (plane.bridgeUser !== `system:serviceaccount:${rendered.bridgeNamespace}:ferry-bridge`) {
    await plane.stop()
    throw new Error(`the bridge token's user ${plane.bridgeUser} is not the RoleBinding's subject`)
  }
  const stop = async () => {
    for (const step of stops.splice(0).reverse()) await step().catch(() => {})
  }
  try {
    const adminKubeconfig = new KubeConfig()
    adminKubeconfig.loadFromFile(plane.kubeconfigFor('admin', namespace))
    const kubeconfig = new KubeConfig()
    kubeconfig.loadFromFile(plane.kubeconfigFor('bridge', namespace))
    const objects = KubernetesObjectApi.makeApiClient(adminKubeconfig)
    const adminBatch = adminKubeconfig.makeApiClient(BatchV1Api)
    const adminCore = adminKubeconfig.makeApiClient(CoreV1Api)
    const bridgeBatch = kubeconfig.makeApiClient(BatchV1Api)

    const applied: string[] = []
    for (const object of rendered.objects) {
      await objects.create(object)
      applied.push(describeObject(object))
    }
    log(`applied from ${manifests}: ${applied.join(', ')}`)
    const deadline = Date.now() + 30_000
    const until = async (what: string, check: () => Promise<boolean>) => {
      for (;;) {
        try {
          if (await check()) return
        } catch (error) {
          if (codeOf(error) === undefined) throw error
        }
        if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`)
        await sleep(50)
      }
    }
    // Pods of a namespace are admitted only once its `default` service account exists.
    await until(`service account ${namespace}/default`, async () => {
      await adminCore.readNamespacedServiceAccount({ name: 'default', namespace })
      return true
    })
    // The RBAC authorizer reads Roles and RoleBindings from informers: wait for it to see both.
    await until('the RoleBinding to take effect', async () => {
      await bridgeBatch.listNamespacedJob({ namespace })
      return true
    })

    const kubelet = new KubeletSimulator({ ...options.kubelet, kubeconfig: adminKubeconfig })
    stops.push(() => kubelet.stop())
    await kubelet.start()

    const jobs = await watchCache<V1Job>(
      adminKubeconfig,
      `/apis/batch/v1/namespaces/${namespace}/jobs`,
      () => adminBatch.listNamespacedJob({ namespace })
    )
    stops.push(jobs.stop)
    // All pods, not just the session namespace's: the node's, for the DeletionFinisher.
    const pods = await watchCache<V1Pod>(adminKubeconfig, '/api/v1/pods', () =>
      adminCore.listPodForAllNamespaces()
    )
    stops.push(pods.stop)
    const finisher = new DeletionFinisher(adminCore, kubelet, pods.cache)
    stops.push(async () => finisher.stop())
    pods.cache.on('update', () => finisher.scan())
    const inNamespace = () =>
      pods.cache.list().filter((pod) => pod.metadata?.namespace === namespace)

    const audit = new AuditLog(plane.auditLog!)
    const orphans = async () => {
      const [allJobs, allPods] = await Promise.all([
        adminBatch.listJobForAllNamespaces(),
        adminCore.listPodForAllNamespaces(),
      ])
      const names = (items: KubernetesObject[]) =>
        items.map((item) => `${item.metadata?.namespace}/${item.metadata?.name}`)
      return {
        jobs: names(allJobs.items),
        pods: names(allPods.items),
        processes: kubelet.processes(),
      }
    }
    return {
      plane,
      namespace,
      user: plane.bridgeUser,
      kubeconfig,
      adminKubeconfig,
      kubelet,
      applied,
      description: `real cluster: kube-apiserver + kube-controller-manager v${K8S_VERSION}, etcd`,
      jobs: () => jobs.cache.list().map((job) => toWire<Job>(job)),
      pods: () => inNamespace().map((pod) => toWire<Pod>(pod)),
      synced: async (timeoutMs = 5_000) => {
        const end = Date.now() + timeoutMs
        for (;;) {
          const [listedJobs, listedPods] = await Promise.all([
            adminBatch.listNamespacedJob({ namespace }),
            adminCore.listNamespacedPod({ namespace }),
          ])
          if (caughtUp(jobs.cache.list(), listedJobs) && caughtUp(inNamespace(), listedPods)) return
          if (Date.now() >= end) return
          await sleep(20)
        }
      },
      requests: () => audit.read().filter((request) => request.user === plane.bridgeUser),
      clearRequests: () => audit.clear(),
      orphans,
      clean: async () => {
        const { jobs: leftJobs, pods: leftPods } = await orphans()
        const split = (ref: string) => {
          const [ns, name] = ref.split('/') as [string, string]
          return { namespace: ns, name }
        }
        for (const ref of leftJobs) {
          await adminBatch
            .deleteNamespacedJob({ ...split(ref), propagationPolicy: 'Background' })
            .catch(() => undefined)
        }
        for (const ref of leftPods) {
          await adminCore
            .deleteNamespacedPod({ ...split(ref), gracePeriodSeconds: 0 })
            .catch(() => undefined)
        }
      },
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}
