/**
 * @module test/k8s/fake-api-server.test
 *
 * The fake API server through the real `@kubernetes/client-node` 2.x: object shapes, the
 * errors a real server gives (409, 422 naming the field, 403 from Pod Security, 404, 401),
 * delete propagation, selectors, paging, patches, dry runs and injected faults. No kubelet
 * runs here, so pods stay unscheduled.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node'
import { FakeApiServer, type FakeApiServerOptions } from './fake-api-server.ts'
import { JobController } from './job-controller.ts'
import { apiFailure, jobBody, waitFor } from './testing.ts'

const NS = 'mcp'
const TOKEN = 'test-token'

interface Harness {
  api: FakeApiServer
  controller: JobController
  kubeconfig: KubeConfig
  batch: BatchV1Api
  core: CoreV1Api
}

let harness: Harness | undefined

const configFor = (url: string, token?: string) => {
  const kubeconfig = new KubeConfig()
  kubeconfig.loadFromClusterAndUser(
    { name: 'sim', server: url, skipTLSVerify: true },
    { name: 'user', ...(token ? { token } : {}) }
  )
  return kubeconfig
}

const start = async (options: FakeApiServerOptions = {}): Promise<Harness> => {
  const api = new FakeApiServer({ token: TOKEN, ...options })
  const { url } = await api.start()
  const controller = new JobController(api)
  controller.start()
  const kubeconfig = configFor(url, TOKEN)
  harness = {
    api,
    controller,
    kubeconfig,
    batch: kubeconfig.makeApiClient(BatchV1Api),
    core: kubeconfig.makeApiClient(CoreV1Api),
  }
  return harness
}

beforeEach(async () => {
  await start()
})

afterEach(async () => {
  harness?.controller.stop()
  await harness?.api.stop()
  harness = undefined
})

const h = () => harness!
const container = { name: 'main', image: 'ferry/sidecar:1', command: ['node', '-e', ''] }
const podsOf = async (job: string) =>
  (await h().core.listNamespacedPod({ namespace: NS, labelSelector: `job-name=${job}` })).items

describe('creating Jobs', () => {
  it('returns the stored Job with server-set metadata, defaults, selector and pod labels', async () => {
    const created = await h().batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'mcp-a', container }),
    })
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/)
    expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date)
    expect(Number(created.metadata?.resourceVersion)).toBeGreaterThan(0)
    expect(created.spec?.completions).toBe(1)
    expect(created.spec?.selector?.matchLabels).toEqual({
      'batch.kubernetes.io/controller-uid': created.metadata!.uid,
    })
    expect(created.spec?.template.metadata?.labels).toMatchObject({
      app: 'k8s-sim-test',
      'controller-uid': created.metadata!.uid,
      'job-name': 'mcp-a',
      'batch.kubernetes.io/job-name': 'mcp-a',
      'batch.kubernetes.io/controller-uid': created.metadata!.uid,
    })
    const read = await h().batch.readNamespacedJob({ name: 'mcp-a', namespace: NS })
    expect(read.metadata?.uid).toBe(created.metadata?.uid)
  })

  it('generates names from generateName and stores nothing on dryRun=All', async () => {
    const body = jobBody({ name: '', container })
    body.metadata = { generateName: 'mcp-' }
    const generated = await h().batch.createNamespacedJob({ namespace: NS, body })
    expect(generated.metadata?.name).toMatch(/^mcp-[bcdfghjklmnpqrstvwxz2456789]{5}$/)

    const dry = await h().batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'dry', container }),
      dryRun: 'All',
    })
    expect(dry.metadata?.name).toBe('dry')
    expect(
      (await apiFailure(h().batch.readNamespacedJob({ name: 'dry', namespace: NS }))).code
    ).toBe(404)
  })

  it('answers a duplicate name with 409 AlreadyExists', async () => {
    await h().batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'dup', container }),
    })
    const failure = await apiFailure(
      h().batch.createNamespacedJob({ namespace: NS, body: jobBody({ name: 'dup', container }) })
    )
    expect(failure.code).toBe(409)
    expect(failure.status).toMatchObject({
      reason: 'AlreadyExists',
      message: 'jobs.batch "dup" already exists',
    })
  })

  it('answers invalid names with 422 naming the field', async () => {
    const bad = await apiFailure(
      h().batch.createNamespacedJob({
        namespace: NS,
        body: jobBody({ name: 'Bad_Name', container }),
      })
    )
    expect(bad.code).toBe(422)
    expect(bad.status?.reason).toBe('Invalid')
    expect(bad.status?.message).toMatch(
      /^Job\.batch "Bad_Name" is invalid: metadata\.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/
    )
    expect(bad.status?.details?.causes?.map((cause) => cause.field)).toEqual(['metadata.name'])

    const long = 'a'.repeat(64)
    const tooLong = await apiFailure(
      h().batch.createNamespacedJob({ namespace: NS, body: jobBody({ name: long, container }) })
    )
    expect(tooLong.code).toBe(422)
    expect(tooLong.status?.message).toContain('must be no more than 63 characters')
  })

  it('answers restartPolicy Always (also the default) with the real 422 message', async () => {
    const body = jobBody({ name: 'always', container })
    body.spec!.template.spec!.restartPolicy = 'Always'
    const failure = await apiFailure(h().batch.createNamespacedJob({ namespace: NS, body }))
    expect(failure.code).toBe(422)
    expect(failure.status?.message).toBe(
      'Job.batch "always" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"'
    )
    delete body.spec!.template.spec!.restartPolicy
    expect((await apiFailure(h().batch.createNamespacedJob({ namespace: NS, body }))).code).toBe(
      422
    )
  })

  it('answers a Job without containers or image with 422 listing every field', async () => {
    const body = jobBody({ name: 'empty', container })
    body.spec!.template.spec!.containers = []
    const none = await apiFailure(h().batch.createNamespacedJob({ namespace: NS, body }))
    expect(none.status?.message).toBe(
      'Job.batch "empty" is invalid: spec.template.spec.containers: Required value'
    )
    body.spec!.template.spec!.containers = [{ name: 'Main' } as never]
    const both = await apiFailure(h().batch.createNamespacedJob({ namespace: NS, body }))
    expect(both.status?.details?.causes?.map((cause) => cause.field)).toEqual([
      'spec.template.spec.containers[0].name',
      'spec.template.spec.containers[0].image',
    ])
  })

  it('answers a pod template that breaks Pod Security "restricted" with 403', async () => {
    const body = jobBody({ name: 'unsafe', container })
    delete body.spec!.template.spec!.securityContext
    const failure = await apiFailure(h().batch.createNamespacedJob({ namespace: NS, body }))
    expect(failure.code).toBe(403)
    expect(failure.status?.reason).toBe('Forbidden')
    expect(failure.status?.message).toMatch(
      /^jobs\.batch "unsafe" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true .*seccompProfile/
    )
  })

  it('models real clusters when asked: the Job is admitted with a warning, its pods are forbidden', async () => {
    await h().api.stop()
    const { api, core, batch } = await start({ podSecurityRejectsJobs: false })
    const body = jobBody({ name: 'warned', container })
    body.spec!.template.spec!.hostNetwork = true
    const created = await batch.createNamespacedJobWithHttpInfo({ namespace: NS, body })
    expect(created.httpStatusCode).toBe(201)
    expect(created.headers.warning).toContain('would violate PodSecurity')
    expect(api.requests.find((request) => request.verb === 'create')?.status).toBe(201)
    const event = await waitFor('a FailedCreate event', async () =>
      (
        await core.listNamespacedEvent({
          namespace: NS,
          fieldSelector: 'involvedObject.name=warned',
        })
      ).items.find((item) => item.reason === 'FailedCreate')
    )
    expect(event.message).toMatch(
      /^Error creating: pods "warned-\w{5}" is forbidden: violates PodSecurity "restricted:latest": host namespaces \(hostNetwork=true\)$/
    )
    expect((await core.listNamespacedPod({ namespace: NS })).items).toEqual([])
  })
})

describe('reading and listing', () => {
  it('answers a missing Job with 404 NotFound', async () => {
    const failure = await apiFailure(h().batch.readNamespacedJob({ name: 'nope', namespace: NS }))
    expect(failure.code).toBe(404)
    expect(failure.status).toMatchObject({
      reason: 'NotFound',
      message: 'jobs.batch "nope" not found',
    })
  })

  it('filters by label and field selectors and pages with limit/continue', async () => {
    for (const [name, tier] of [
      ['j1', 'a'],
      ['j2', 'b'],
      ['j3', 'c'],
    ] as const) {
      await h().batch.createNamespacedJob({
        namespace: NS,
        body: jobBody({ name, container, labels: { app: 'x', tier } }),
      })
    }
    const names = async (labelSelector?: string, fieldSelector?: string) =>
      (
        await h().batch.listNamespacedJob({ namespace: NS, labelSelector, fieldSelector })
      ).items.map((j) => j.metadata?.name)
    expect(await names('tier in (a,c)')).toEqual(['j1', 'j3'])
    expect(await names('tier!=a')).toEqual(['j2', 'j3'])
    expect(await names('app,!missing')).toEqual(['j1', 'j2', 'j3'])
    expect(await names(undefined, 'metadata.name=j2')).toEqual(['j2'])

    const first = await h().batch.listNamespacedJob({ namespace: NS, limit: 2 })
    expect(first.items.map((j) => j.metadata?.name)).toEqual(['j1', 'j2'])
    expect(first.metadata?.remainingItemCount).toBe(1)
    const rest = await h().batch.listNamespacedJob({
      namespace: NS,
      limit: 2,
      _continue: first.metadata!._continue!,
    })
    expect(rest.items.map((j) => j.metadata?.name)).toEqual(['j3'])
    expect(rest.metadata?._continue).toBeUndefined()
  })

  it('rejects an unsupported field selector with 400', async () => {
    const failure = await apiFailure(
      h().core.listNamespacedPod({ namespace: NS, fieldSelector: 'spec.image=x' })
    )
    expect(failure.code).toBe(400)
  })
})

describe('deleting Jobs', () => {
  const createWithPod = async (name: string) => {
    await h().batch.createNamespacedJob({ namespace: NS, body: jobBody({ name, container }) })
    return (await waitFor(`the pod of ${name}`, async () => (await podsOf(name))[0]))!
  }

  it('propagationPolicy Background removes the pods', async () => {
    await createWithPod('bg')
    const response = await h().batch.deleteNamespacedJob({
      name: 'bg',
      namespace: NS,
      propagationPolicy: 'Background',
    })
    expect(response.kind).toBe('Job')
    await waitFor('pods gone', async () => (await podsOf('bg')).length === 0)
    expect(
      (await apiFailure(h().batch.readNamespacedJob({ name: 'bg', namespace: NS }))).code
    ).toBe(404)
  })

  it('without a propagationPolicy the pods are orphaned: kept, ownerReferences removed', async () => {
    const pod = await createWithPod('orphaning')
    expect(pod.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'Job',
      name: 'orphaning',
      controller: true,
    })
    const response = await h().batch.deleteNamespacedJob({ name: 'orphaning', namespace: NS })
    expect(response.kind).toBe('Job')
    await waitFor(
      'the Job gone',
      async () =>
        (await apiFailure(h().batch.readNamespacedJob({ name: 'orphaning', namespace: NS })))
          .code === 404
    )
    const kept = await h().core.readNamespacedPod({ name: pod.metadata!.name!, namespace: NS })
    expect(kept.metadata?.ownerReferences).toBeUndefined()
    expect(kept.metadata?.uid).toBe(pod.metadata?.uid)
  })

  it('propagationPolicy Orphan keeps the pods too; Foreground removes pods before the Job', async () => {
    await createWithPod('orph')
    await h().batch.deleteNamespacedJob({
      name: 'orph',
      namespace: NS,
      propagationPolicy: 'Orphan',
    })
    await waitFor(
      'orph gone',
      async () =>
        (await h().batch.listNamespacedJob({ namespace: NS, fieldSelector: 'metadata.name=orph' }))
          .items.length === 0
    )
    expect(await podsOf('orph')).toHaveLength(1)

    await createWithPod('fg')
    await h().batch.deleteNamespacedJob({
      name: 'fg',
      namespace: NS,
      propagationPolicy: 'Foreground',
    })
    await waitFor(
      'fg gone',
      async () =>
        (await h().batch.listNamespacedJob({ namespace: NS, fieldSelector: 'metadata.name=fg' }))
          .items.length === 0
    )
    expect(await podsOf('fg')).toHaveLength(0)
  })

  it('answers deleting a missing Job with 404', async () => {
    expect(
      (await apiFailure(h().batch.deleteNamespacedJob({ name: 'ghost', namespace: NS }))).code
    ).toBe(404)
  })
})

describe('patching and pod status', () => {
  it('applies merge patches with the header and rejects an object body as JSON patch (400)', async () => {
    await h().batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'patched', container }),
    })
    const wrong = await apiFailure(
      h().batch.patchNamespacedJob({
        name: 'patched',
        namespace: NS,
        body: { metadata: { labels: { a: 'b' } } },
      })
    )
    expect(wrong.code).toBe(400)
    const patched = await h().batch.patchNamespacedJob(
      { name: 'patched', namespace: NS, body: { metadata: { labels: { claimed: 'yes' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
    )
    expect(patched.metadata?.labels).toMatchObject({ claimed: 'yes', app: 'k8s-sim-test' })
  })

  it('rejects a status update from a stale resourceVersion with 409 Conflict', async () => {
    await h().batch.createNamespacedJob({ namespace: NS, body: jobBody({ name: 'st', container }) })
    const pod = (await waitFor('pod', async () => (await podsOf('st'))[0])) as V1Pod
    const stale = structuredClone(pod)
    pod.status = { ...pod.status, phase: 'Running' }
    await h().core.replaceNamespacedPodStatus({
      name: pod.metadata!.name!,
      namespace: NS,
      body: pod,
    })
    stale.status = { ...stale.status, phase: 'Failed' }
    const failure = await apiFailure(
      h().core.replaceNamespacedPodStatus({ name: pod.metadata!.name!, namespace: NS, body: stale })
    )
    expect(failure.code).toBe(409)
    expect(failure.status?.reason).toBe('Conflict')
  })

  it('binds a pod once; a second binding is a 409', async () => {
    await h().batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'bind', container }),
    })
    const pod = (await waitFor('pod', async () => (await podsOf('bind'))[0])) as V1Pod
    const binding = {
      metadata: { name: pod.metadata!.name! },
      target: { kind: 'Node', name: 'n1' },
    }
    await h().core.createNamespacedPodBinding({
      name: pod.metadata!.name!,
      namespace: NS,
      body: binding,
    })
    const bound = await h().core.readNamespacedPod({ name: pod.metadata!.name!, namespace: NS })
    expect(bound.spec?.nodeName).toBe('n1')
    expect(bound.status?.conditions?.find((c) => c.type === 'PodScheduled')?.status).toBe('True')
    expect(
      (
        await apiFailure(
          h().core.createNamespacedPodBinding({
            name: pod.metadata!.name!,
            namespace: NS,
            body: binding,
          })
        )
      ).code
    ).toBe(409)
  })
})

describe('authentication and injected faults', () => {
  it('answers 401 without the bearer token and with a wrong one', async () => {
    const anonymous = configFor(h().api.url).makeApiClient(BatchV1Api)
    const none = await apiFailure(anonymous.listNamespacedJob({ namespace: NS }))
    expect(none.code).toBe(401)
    const wrong = configFor(h().api.url, 'nope').makeApiClient(BatchV1Api)
    expect((await apiFailure(wrong.listNamespacedJob({ namespace: NS }))).code).toBe(401)
  })

  it('answers 429 with Retry-After for the next call, then succeeds', async () => {
    h().api.failNext('create', 'jobs', 429, 1, { retryAfterSeconds: 2 })
    const limited = await apiFailure(
      h().batch.createNamespacedJob({ namespace: NS, body: jobBody({ name: 'r', container }) })
    )
    expect(limited.code).toBe(429)
    expect(limited.headers['retry-after']).toBe('2')
    expect(limited.status?.reason).toBe('TooManyRequests')
    const created = await h().batch.createNamespacedJob({
      namespace: NS,
      body: jobBody({ name: 'r', container }),
    })
    expect(created.metadata?.name).toBe('r')
    expect(h().api.faults.pending).toBe(0)
  })

  it('injects 403, 409, 422, 500 and 503 for N matching calls only', async () => {
    const expectations: Array<[number, string]> = [
      [403, 'Forbidden'],
      [409, 'AlreadyExists'],
      [422, 'Invalid'],
      [500, 'InternalError'],
      [503, 'ServiceUnavailable'],
    ]
    for (const [code, reason] of expectations) {
      h().api.failNext('create', 'jobs', code, 2)
      for (let i = 0; i < 2; i++) {
        const failure = await apiFailure(
          h().batch.createNamespacedJob({
            namespace: NS,
            body: jobBody({ name: `f${code}`, container }),
          })
        )
        expect(failure.code).toBe(code)
        expect(failure.status?.reason).toBe(reason)
      }
      await h().batch.createNamespacedJob({
        namespace: NS,
        body: jobBody({ name: `f${code}`, container }),
      })
    }
    // A rule for another verb/resource leaves this call alone.
    h().api.failNext('delete', 'pods', 500)
    await h().batch.readNamespacedJob({ name: 'f403', namespace: NS })
  })

  it('lets a hook decide per call', async () => {
    let calls = 0
    h().api.addHook((request) =>
      request.verb === 'list' && ++calls === 1 ? { status: 503 } : undefined
    )
    expect((await apiFailure(h().batch.listNamespacedJob({ namespace: NS }))).code).toBe(503)
    expect((await h().batch.listNamespacedJob({ namespace: NS })).items).toEqual([])
  })
})
