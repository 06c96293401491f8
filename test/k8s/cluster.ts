/**
 * @module test/k8s/cluster
 *
 * One call to get a whole simulated cluster: the fake API server, the Job controller and the
 * kubelet simulator wired together, plus a `KubeConfig` (bearer token, `skipTLSVerify` because
 * it is plain HTTP) for the code under test. The kubelet authenticates as its own user, so
 * injected faults can be aimed at the code under test alone. `stop()` leaves no process behind;
 * `orphans()` says what a test left in the cluster.
 */
import { randomBytes } from 'node:crypto'
import { KubeConfig } from '@kubernetes/client-node'
import { FakeApiServer, type FakeApiServerOptions } from './fake-api-server.ts'
import { JobController, type JobControllerOptions } from './job-controller.ts'
import {
  KubeletSimulator,
  type KubeletSimulatorOptions,
  type SimulatedProcess,
} from './kubelet-simulator.ts'
import type { Job, Pod } from './types.ts'

export interface SimulatedClusterOptions {
  /** Namespace of the kubeconfig context (default `ferry`); any namespace can be used. */
  namespace?: string
  /** Bearer token of the code under test (default: a random one); `null` disables auth. */
  token?: string | null
  /** User name that token authenticates as (default `ferry-bridge`). */
  user?: string
  api?: Omit<FakeApiServerOptions, 'token' | 'users' | 'logSource'>
  controller?: JobControllerOptions
  kubelet?: Omit<KubeletSimulatorOptions, 'kubeconfig'>
}

export interface Orphans {
  /** `namespace/name` of every Job still stored. */
  jobs: string[]
  /** `namespace/name` of every Pod still stored. */
  pods: string[]
  /** Pod processes still running. */
  processes: SimulatedProcess[]
}

export interface SimulatedCluster {
  url: string
  namespace: string
  token: string | undefined
  /** User name of `kubeconfig`'s token, e.g. for `api.failNext(…, { user })`. */
  user: string
  /** User name of the kubelet simulator's own token (`system:node:<node>`). */
  kubeletUser: string
  /** Ready to use: `kubeconfig.makeApiClient(BatchV1Api)`, `new Watch(kubeconfig)`, informers. */
  kubeconfig: KubeConfig
  /** The same config as kubeconfig-file text (JSON is YAML), for a child process' KUBECONFIG. */
  kubeconfigText: string
  api: FakeApiServer
  controller: JobController
  kubelet: KubeletSimulator
  orphans(): Orphans
  stop(): Promise<void>
}

const names = (objects: Array<Job | Pod>) =>
  objects.map((object) => `${object.metadata?.namespace}/${object.metadata?.name}`)

const configFor = (server: string, namespace: string, token: string | undefined) => {
  const kubeconfig = new KubeConfig()
  kubeconfig.loadFromOptions({
    clusters: [{ name: 'ferry-sim', server, skipTLSVerify: true }],
    users: [{ name: 'ferry-sim', ...(token ? { token } : {}) }],
    contexts: [{ name: 'ferry-sim', cluster: 'ferry-sim', user: 'ferry-sim', namespace }],
    currentContext: 'ferry-sim',
  })
  return kubeconfig
}

export const startSimulatedCluster = async (
  options: SimulatedClusterOptions = {}
): Promise<SimulatedCluster> => {
  const namespace = options.namespace ?? 'ferry'
  const auth = options.token !== null
  const token = auth ? (options.token ?? randomBytes(16).toString('hex')) : undefined
  const kubeletToken = auth ? randomBytes(16).toString('hex') : undefined
  const user = auth ? (options.user ?? 'ferry-bridge') : 'system:anonymous'
  const kubeletUser = auth ? `system:node:${options.kubelet?.nodeName ?? 'sim-node'}` : user
  const users = token && kubeletToken ? { [token]: user, [kubeletToken]: kubeletUser } : undefined
  const api = new FakeApiServer({ ...options.api, ...(users ? { users } : {}) })
  const { url } = await api.start()
  const kubeconfig = configFor(url, namespace, token)
  const controller = new JobController(api, options.controller)
  controller.start()
  const kubelet = new KubeletSimulator({
    ...options.kubelet,
    kubeconfig: configFor(url, namespace, kubeletToken),
  })
  api.logSource = (ns, pod, container) => kubelet.logs(ns, pod, container)
  try {
    await kubelet.start()
  } catch (error) {
    controller.stop()
    await kubelet.stop()
    await api.stop()
    throw error
  }
  let stopped: Promise<void> | undefined
  return {
    url,
    namespace,
    token,
    user,
    kubeletUser,
    kubeconfig,
    kubeconfigText: kubeconfig.exportConfig(),
    api,
    controller,
    kubelet,
    orphans: () => ({
      jobs: names(api.store.list<Job>('jobs')),
      pods: names(api.store.list<Pod>('pods')),
      processes: kubelet.processes(),
    }),
    stop: () =>
      (stopped ??= (async () => {
        controller.stop()
        await kubelet.stop()
        await api.stop()
      })()),
  }
}
