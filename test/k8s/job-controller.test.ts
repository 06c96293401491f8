/**
 * @module test/k8s/job-controller.test
 *
 * The simulated Job controller with pod outcomes written by the test through `pods/status`
 * (no kubelet): pod creation from the template, completion, BackoffLimitExceeded,
 * DeadlineExceeded, podFailurePolicy, retries with backoff and TTL-after-finished.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  type V1Job,
  type V1Pod,
  type V1PodStatus,
} from '@kubernetes/client-node'
import { FakeApiServer } from './fake-api-server.ts'
import { JobController } from './job-controller.ts'
import { apiFailure, jobBody, waitFor } from './testing.ts'

const NS = 'jobs'

let api: FakeApiServer
let controller: JobController
let batch: BatchV1Api
let core: CoreV1Api

beforeEach(async () => {
  api = new FakeApiServer()
  const { url } = await api.start()
  controller = new JobController(api, { backoffBaseMs: 50 })
  controller.start()
  const kubeconfig = new KubeConfig()
  kubeconfig.loadFromClusterAndUser({ name: 'c', server: url, skipTLSVerify: true }, { name: 'u' })
  batch = kubeconfig.makeApiClient(BatchV1Api)
  core = kubeconfig.makeApiClient(CoreV1Api)
})

afterEach(async () => {
  controller.stop()
  await api.stop()
})

const container = { name: 'main', image: 'ferry/sidecar:1', command: ['true'] }

const podsOf = async (job: string) =>
  (await core.listNamespacedPod({ namespace: NS, labelSelector: `job-name=${job}` })).items

const onlyPod = (job: string) => waitFor(`a pod of ${job}`, async () => (await podsOf(job))[0])

const setStatus = async (pod: V1Pod, status: V1PodStatus) => {
  const fresh = await core.readNamespacedPodStatus({ name: pod.metadata!.name!, namespace: NS })
  fresh.status = { ...fresh.status, ...status }
  await core.replaceNamespacedPodStatus({ name: pod.metadata!.name!, namespace: NS, body: fresh })
}

const terminated = (exitCode: number): V1PodStatus => ({
  phase: exitCode === 0 ? 'Succeeded' : 'Failed',
  containerStatuses: [
    {
      name: 'main',
      image: 'ferry/sidecar:1',
      imageID: '',
      ready: false,
      restartCount: 0,
      state: { terminated: { exitCode, reason: exitCode === 0 ? 'Completed' : 'Error' } },
    },
  ],
})

const conditionOf = (job: V1Job, type: string) =>
  job.status?.conditions?.find((c) => c.type === type && c.status === 'True')

const waitCondition = (name: string, type: string, timeoutMs = 10_000) =>
  waitFor(
    `${name} ${type}`,
    async () => {
      const job = await batch.readNamespacedJob({ name, namespace: NS })
      return conditionOf(job, type) ? job : undefined
    },
    timeoutMs
  )

describe('Job controller', () => {
  it('creates one pending, unscheduled pod from the template, owned by the Job', async () => {
    const job = await batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({
        name: 'mk',
        container,
        labels: { app: 'mcp', session: 's1' },
        annotations: { note: 'x' },
      }),
    })
    const pod = await onlyPod('mk')
    expect(pod.metadata?.name).toMatch(/^mk-[bcdfghjklmnpqrstvwxz2456789]{5}$/)
    expect(pod.metadata?.labels).toMatchObject({
      app: 'mcp',
      session: 's1',
      'job-name': 'mk',
      'controller-uid': job.metadata!.uid,
    })
    expect(pod.metadata?.annotations).toEqual({ note: 'x' })
    expect(pod.metadata?.ownerReferences).toEqual([
      expect.objectContaining({
        apiVersion: 'batch/v1',
        kind: 'Job',
        name: 'mk',
        uid: job.metadata!.uid,
        controller: true,
      }),
    ])
    expect(pod.spec?.nodeName).toBeUndefined()
    expect(pod.spec?.containers[0]?.command).toEqual(['true'])
    expect(pod.status?.phase).toBe('Pending')
    const status = await waitFor('active=1', async () => {
      const current = await batch.readNamespacedJob({ name: 'mk', namespace: NS })
      return current.status?.active === 1 ? current.status : undefined
    })
    expect(status.startTime).toBeInstanceOf(Date)
  })

  it('completes the Job when its pod succeeds', async () => {
    await batch.createNamespacedJob({ namespace: NS, body: jobBody({ name: 'ok', container }) })
    await setStatus(await onlyPod('ok'), terminated(0))
    const job = await waitCondition('ok', 'Complete')
    expect(job.status).toMatchObject({ succeeded: 1, failed: 0, active: 0 })
    expect(job.status?.completionTime).toBeInstanceOf(Date)
    expect(conditionOf(job, 'SuccessCriteriaMet')?.reason).toBe('CompletionsReached')
  })

  it('fails the Job with BackoffLimitExceeded after one failure when backoffLimit is 0', async () => {
    await batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'bo', container, backoffLimit: 0 }),
    })
    await setStatus(await onlyPod('bo'), terminated(1))
    const job = await waitCondition('bo', 'Failed')
    expect(conditionOf(job, 'Failed')).toMatchObject({
      reason: 'BackoffLimitExceeded',
      message: 'Job has reached the specified backoff limit',
    })
    expect(conditionOf(job, 'FailureTarget')?.reason).toBe('BackoffLimitExceeded')
    expect(job.status?.failed).toBe(1)
    expect(await podsOf('bo')).toHaveLength(1) // no replacement pod
    const events = await core.listNamespacedEvent({
      namespace: NS,
      fieldSelector: 'involvedObject.name=bo',
    })
    expect(events.items.map((event) => event.reason)).toContain('BackoffLimitExceeded')
  })

  it('retries a failed pod after the backoff while backoffLimit allows', async () => {
    await batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'retry', container, backoffLimit: 1 }),
    })
    const first = await onlyPod('retry')
    await setStatus(first, terminated(1))
    const second = await waitFor('a replacement pod', async () =>
      (await podsOf('retry')).find((pod) => pod.metadata?.uid !== first.metadata?.uid)
    )
    await setStatus(second, terminated(0))
    const job = await waitCondition('retry', 'Complete')
    expect(job.status).toMatchObject({ failed: 1, succeeded: 1 })
  })

  it('fails with DeadlineExceeded after activeDeadlineSeconds and deletes the running pod', async () => {
    await batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'dl', container, activeDeadlineSeconds: 1 }),
    })
    await onlyPod('dl')
    const job = await waitCondition('dl', 'Failed', 5000)
    expect(conditionOf(job, 'Failed')?.reason).toBe('DeadlineExceeded')
    expect(await podsOf('dl')).toHaveLength(0)
  })

  it('deletes a finished Job and its pods after ttlSecondsAfterFinished', async () => {
    await batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'ttl', container, ttlSecondsAfterFinished: 1 }),
    })
    await setStatus(await onlyPod('ttl'), terminated(0))
    await waitCondition('ttl', 'Complete')
    const finishedAt = Date.now()
    await waitFor(
      'the Job gone',
      async () =>
        (await apiFailure(batch.readNamespacedJob({ name: 'ttl', namespace: NS }))).code === 404,
      5000
    )
    expect(Date.now() - finishedAt).toBeGreaterThan(500)
    expect(await podsOf('ttl')).toHaveLength(0)
  })

  it('honours podFailurePolicy FailJob on exit codes, with reason PodFailurePolicy', async () => {
    const body = jobBody({
      name: 'pfp',
      container,
      backoffLimit: 3,
      podFailurePolicy: {
        rules: [
          {
            action: 'FailJob',
            onExitCodes: { containerName: 'main', operator: 'In', values: [42] },
          },
        ],
      },
    })
    await batch.createNamespacedJob({ namespace: NS, body })
    const pod = await onlyPod('pfp')
    await setStatus(pod, terminated(42))
    const job = await waitCondition('pfp', 'Failed')
    expect(conditionOf(job, 'Failed')).toMatchObject({
      reason: 'PodFailurePolicy',
      message: `Container main for pod ${NS}/${pod.metadata!.name} failed with exit code 42 matching FailJob rule at index 0`,
    })
  })

  it('honours podFailurePolicy on the DisruptionTarget condition and Ignore rules', async () => {
    const body = jobBody({
      name: 'dis',
      container,
      backoffLimit: 0,
      podFailurePolicy: {
        rules: [
          { action: 'Ignore', onExitCodes: { operator: 'In', values: [7] } },
          { action: 'FailJob', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        ],
      },
    })
    await batch.createNamespacedJob({ namespace: NS, body })
    const first = await onlyPod('dis')
    await setStatus(first, terminated(7)) // ignored: not counted, replaced
    const second = await waitFor('a replacement pod', async () =>
      (await podsOf('dis')).find((pod) => pod.metadata?.uid !== first.metadata?.uid)
    )
    await setStatus(second, {
      ...terminated(137),
      reason: 'Evicted',
      conditions: [{ type: 'DisruptionTarget', status: 'True', reason: 'TerminationByKubelet' }],
    })
    const job = await waitCondition('dis', 'Failed')
    expect(conditionOf(job, 'Failed')?.reason).toBe('PodFailurePolicy')
    expect(conditionOf(job, 'Failed')?.message).toContain(
      'has condition DisruptionTarget matching FailJob rule at index 1'
    )
    expect(job.status?.failed).toBe(1)
  })

  it('rejects podFailurePolicy with restartPolicy OnFailure (422)', async () => {
    const body = jobBody({
      name: 'pfp-bad',
      container,
      podFailurePolicy: {
        rules: [{ action: 'FailJob', onPodConditions: [{ type: 'DisruptionTarget' }] }],
      },
    })
    body.spec!.template.spec!.restartPolicy = 'OnFailure'
    const failure = await apiFailure(batch.createNamespacedJob({ namespace: NS, body }))
    expect(failure.code).toBe(422)
    expect(failure.status?.message).toContain(
      'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Never"'
    )
  })
})
