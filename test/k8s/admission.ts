/**
 * @module test/k8s/admission
 *
 * What happens to an object between `POST` and storage on a real API server: name generation,
 * defaulting (Job selector and labels, pod template defaults), validation (422) and Pod Security
 * admission (403). The Job controller creates its pods through here too, so they look real.
 */
import { randomUUID } from 'node:crypto'
import { restrictedDenial, restrictedViolations } from './pod-security.ts'
import { forbidden, invalid, StatusError } from './status.ts'
import {
  type ConfigMap,
  type Job,
  type KubeEvent,
  type KubeObject,
  type Pod,
  type Resource,
  type Secret,
  apiVersionOf,
  nowRfc3339,
  RESOURCES,
} from './types.ts'
import { validateJob, validateObjectName, validatePod } from './validation.ts'

type PodSpec = NonNullable<Pod['spec']>

export interface AdmissionOptions {
  /** Pod Security level enforced in every namespace (default `restricted`). */
  podSecurity: 'restricted' | 'privileged'
  /**
   * Reject a Job whose pod template breaks the level (403 on the Job itself). A real cluster only
   * warns on the Job and refuses each pod the Job controller creates; `false` models that.
   */
  podSecurityRejectsJobs: boolean
}

/** Warnings to send back in `Warning` headers, as the real server does. */
export interface Admitted<T> {
  object: T
  warnings: string[]
}

const RANDOM_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'

/** `<generateName><5 random>`, truncated like the real `names.SimpleNameGenerator`. */
export const generateName = (base: string): string => {
  let suffix = ''
  for (let i = 0; i < 5; i++)
    suffix += RANDOM_ALPHABET[Math.floor(Math.random() * RANDOM_ALPHABET.length)]
  return `${base.slice(0, 58)}${suffix}`
}

const defaultPodSpec = (spec: PodSpec | undefined): PodSpec => {
  const out: PodSpec = { ...(spec ?? { containers: [] }) }
  out.restartPolicy ??= 'Always'
  out.terminationGracePeriodSeconds ??= 30
  out.dnsPolicy ??= 'ClusterFirst'
  out.schedulerName ??= 'default-scheduler'
  out.securityContext ??= {}
  out.containers = (out.containers ?? []).map((container) => {
    const tag = (container.image ?? '').split('/').pop()?.split('@')[0]?.split(':')[1]
    return {
      ...container,
      imagePullPolicy:
        container.imagePullPolicy ?? (!tag || tag === 'latest' ? 'Always' : 'IfNotPresent'),
      terminationMessagePath: container.terminationMessagePath ?? '/dev/termination-log',
      terminationMessagePolicy: container.terminationMessagePolicy ?? 'File',
      resources: container.resources ?? {},
      ports: container.ports?.map((port) => ({ ...port, protocol: port.protocol ?? 'TCP' })),
    }
  })
  return out
}

const qosClass = (spec: PodSpec): string => {
  const containers = spec.containers ?? []
  const resources = containers.map((c) => c.resources ?? {})
  const none = resources.every(
    (r) => !Object.keys(r.requests ?? {}).length && !Object.keys(r.limits ?? {}).length
  )
  if (none) return 'BestEffort'
  const guaranteed = resources.every((r) =>
    ['cpu', 'memory'].every(
      (key) =>
        r.limits?.[key] !== undefined && (r.requests?.[key] ?? r.limits[key]) === r.limits[key]
    )
  )
  return guaranteed ? 'Guaranteed' : 'Burstable'
}

const stamp = <T extends KubeObject>(resource: Resource, object: T, namespace: string): T => {
  const meta = { ...(object.metadata ?? {}) }
  if (!meta.name && meta.generateName) meta.name = generateName(meta.generateName)
  meta.namespace = namespace
  meta.uid = randomUUID()
  meta.creationTimestamp = nowRfc3339()
  meta.generation = 1
  delete meta.resourceVersion
  delete meta.deletionTimestamp
  delete meta.deletionGracePeriodSeconds
  return {
    ...object,
    apiVersion: apiVersionOf(resource),
    kind: RESOURCES[resource].kind,
    metadata: meta,
  }
}

const checkPodSecurity = (
  resource: 'jobs' | 'pods',
  name: string,
  spec: PodSpec | undefined,
  options: AdmissionOptions
): string[] => {
  if (options.podSecurity !== 'restricted') return []
  const violations = restrictedViolations(spec)
  if (violations.length === 0) return []
  if (resource === 'pods' || options.podSecurityRejectsJobs) {
    throw forbidden(resource, name, restrictedDenial(violations))
  }
  return [`would violate PodSecurity "restricted:latest": ${violations.join(', ')}`]
}

const admitJob = (job: Job, options: AdmissionOptions): Admitted<Job> => {
  const uid = job.metadata!.uid!
  const name = job.metadata!.name ?? ''
  const spec = { ...(job.spec ?? ({} as NonNullable<Job['spec']>)) }
  const template = { ...(spec.template ?? {}) }
  const templateMeta = { ...(template.metadata ?? {}) }
  // Defaulting runs before the selector is generated, so a label-less Job copies the user's
  // template labels only, never the generated ones.
  const labels =
    job.metadata!.labels && Object.keys(job.metadata!.labels).length
      ? job.metadata!.labels
      : { ...(templateMeta.labels ?? {}) }
  templateMeta.labels = {
    ...(templateMeta.labels ?? {}),
    'batch.kubernetes.io/controller-uid': uid,
    'batch.kubernetes.io/job-name': name,
    'controller-uid': uid,
    'job-name': name,
  }
  template.metadata = templateMeta
  template.spec = defaultPodSpec(template.spec)
  spec.template = template as NonNullable<Job['spec']>['template']
  if (spec.completions === undefined && spec.parallelism === undefined) spec.completions = 1
  spec.parallelism ??= 1
  spec.backoffLimit ??= 6
  spec.completionMode ??= 'NonIndexed'
  spec.suspend ??= false
  spec.podReplacementPolicy ??= spec.podFailurePolicy ? 'Failed' : 'TerminatingOrFailed'
  spec.selector ??= { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } }
  const admitted: Job = {
    ...job,
    metadata: { ...job.metadata, ...(Object.keys(labels).length ? { labels } : {}) },
    spec,
    status: {},
  }
  // Validate what the user sent (template restartPolicy defaults to Always and must fail).
  const causes = validateJob({
    ...admitted,
    metadata: job.metadata,
    spec: { ...spec, template: { ...template, metadata: job.spec?.template?.metadata } },
  })
  if (causes.length) throw invalid('jobs', name, causes)
  const warnings = checkPodSecurity('jobs', name, template.spec, options)
  return { object: admitted, warnings }
}

/** Defaults and checks for a pod (created by a client or by the Job controller). */
const admitPod = (pod: Pod, options: AdmissionOptions): Admitted<Pod> => {
  const spec = defaultPodSpec(pod.spec)
  const admitted: Pod = {
    ...pod,
    spec,
    status: { phase: 'Pending', qosClass: qosClass(spec) },
  }
  const causes = validatePod({
    ...admitted,
    spec: { ...spec, restartPolicy: pod.spec?.restartPolicy ?? 'Always' },
  })
  if (causes.length) throw invalid('pods', pod.metadata?.name ?? '', causes)
  checkPodSecurity('pods', pod.metadata?.name ?? '', spec, options)
  return { object: admitted, warnings: [] }
}

/** Runs create-time admission for any served resource. Throws a StatusError to reject. */
export const admitCreate = (
  resource: Resource,
  namespace: string,
  body: KubeObject,
  options: AdmissionOptions
): Admitted<KubeObject> => {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new StatusError(400, 'BadRequest', 'the body of the request was not a JSON object')
  }
  if (body.metadata?.namespace && body.metadata.namespace !== namespace) {
    throw new StatusError(
      400,
      'BadRequest',
      'the namespace of the provided object does not match the namespace sent on the request'
    )
  }
  if (!body.metadata?.name && !body.metadata?.generateName) {
    throw invalid(resource, '', [
      {
        reason: 'FieldValueRequired',
        message: 'name or generateName is required',
        field: 'metadata.name',
      },
    ])
  }
  const stamped = stamp(resource, body, namespace)
  switch (resource) {
    case 'jobs':
      return admitJob(stamped as Job, options)
    case 'pods':
      return admitPod(stamped as Pod, options)
    case 'events': {
      const event = stamped as KubeEvent
      return { object: { ...event, count: event.count ?? 1 } as KubeEvent, warnings: [] }
    }
    case 'secrets':
    case 'configmaps': {
      const causes = validateObjectName(stamped.metadata?.name)
      if (causes.length) throw invalid(resource, stamped.metadata?.name ?? '', causes)
      if (resource === 'configmaps') return { object: stamped as ConfigMap, warnings: [] }
      // Like the real server, fold `stringData` into base64 `data` on write.
      const { stringData, ...secret } = stamped as Secret
      const data = { ...(secret.data ?? {}) }
      for (const [key, value] of Object.entries(stringData ?? {})) {
        data[key] = Buffer.from(value).toString('base64')
      }
      return { object: { type: 'Opaque', ...secret, data } as Secret, warnings: [] }
    }
  }
}
