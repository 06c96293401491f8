/**
 * @module test/e2e/kubernetes-admission
 *
 * Pod Security admission as a real cluster applies it: the Job is accepted (with a warning) and
 * every pod the Job controller tries to create is refused, so no pod ever appears. The start
 * must still end, at the start timeout, with the reason from the Job's `FailedCreate` event,
 * and the Job deleted. (The default simulated cluster refuses such a Job outright; see
 * `kubernetes.test.ts`.)
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { startSimulatedCluster, type SimulatedCluster } from '../k8s/cluster.ts'
import {
  type KubernetesBridge,
  cleanCluster,
  jobsIn,
  kubernetesServer,
  settledOrphans,
  settledPodProcesses,
  startKubernetesBridge,
} from '../helpers/kubernetes.ts'
import { SdkClients } from '../helpers/mcp.ts'

const IP_PREFIX = '127.0.42.'
let cluster: SimulatedCluster
const clients = new SdkClients()
const bridges: KubernetesBridge[] = []

beforeAll(async () => {
  cluster = await startSimulatedCluster({
    namespace: 'ferry-admission',
    api: { podSecurityRejectsJobs: false },
    kubelet: { ipPrefix: IP_PREFIX, stopGraceMs: 500, maxGracePeriodMs: 3000 },
  })
})
afterEach(async () => {
  await clients.closeAll()
  for (const bridge of bridges.splice(0)) await bridge.close()
  const left = await settledOrphans(cluster)
  const stray = await settledPodProcesses(IP_PREFIX)
  await cleanCluster(cluster)
  expect(left).toEqual({ jobs: [], pods: [], processes: [] })
  expect(stray).toEqual([])
})
afterAll(() => cluster?.stop())

describe('Pod Security admission that refuses the pods, not the Job', () => {
  it('ends the start at the timeout with the FailedCreate reason, and deletes the Job', async () => {
    const bridge = await startKubernetesBridge(cluster, {
      servers: {
        hostpath: kubernetesServer(cluster.namespace, {
          startTimeout: '2s',
          podTemplatePatch: {
            spec: { volumes: [{ name: 'host', hostPath: { path: '/etc' } }] },
          },
        }),
      },
    })
    bridges.push(bridge)
    const error = await clients.connect(bridge.url('hostpath')).then(
      () => undefined,
      (caught: unknown) => caught
    )
    expect(error).toBeInstanceOf(McpError)
    expect((error as McpError).message).toMatch(
      /Session start failed: the session did not become ready within 2000 ms: FailedCreate: Error creating: pods ".*" is forbidden: violates PodSecurity "restricted:latest": hostPath volumes/
    )
    // The Job was created, then deleted (Background) by the runtime.
    const requests = cluster.api.requests.filter((r) => r.user === cluster.user)
    const created = requests.find((r) => r.verb === 'create' && r.resource === 'jobs')
    expect(created?.status).toBe(201)
    const deletes = requests.filter((r) => r.verb === 'delete' && r.name === created?.name)
    expect(deletes.map((r) => r.query.propagationPolicy)).toEqual(['Background'])
    expect(jobsIn(cluster)).toEqual([])
  })

  it('a session without such settings starts normally on the same cluster', async () => {
    const bridge = await startKubernetesBridge(cluster, {
      servers: { fixture: kubernetesServer(cluster.namespace) },
    })
    bridges.push(bridge)
    const { client, transport } = await clients.connect(bridge.url('fixture'))
    expect((await client.listTools()).tools.length).toBeGreaterThan(0)
    await transport.terminateSession()
  })
})
