/**
 * @module test/k8s/validation
 *
 * The semantic checks the real API server answers with 422 Invalid and that schema validators
 * miss: object names, label syntax, Job `restartPolicy`, required containers and images. Messages
 * and field paths follow `k8s.io/apimachinery/pkg/util/validation` word for word where it matters.
 */
import type { StatusCause } from './status.ts'
import type { Job, Pod } from './types.ts'

type PodSpec = NonNullable<Pod['spec']>

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/

const LABEL_MSG =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
const SUBDOMAIN_MSG =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
const LABEL_VALUE_MSG =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
const QUALIFIED_NAME_MSG =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"

const show = (value: unknown) => (typeof value === 'string' ? `"${value}"` : String(value))

export const required = (field: string): StatusCause => ({
  reason: 'FieldValueRequired',
  message: 'Required value',
  field,
})

export const invalidValue = (field: string, value: unknown, detail: string): StatusCause => ({
  reason: 'FieldValueInvalid',
  message: `Invalid value: ${show(value)}: ${detail}`,
  field,
})

export const notSupported = (field: string, value: unknown, supported: string[]): StatusCause => ({
  reason: 'FieldValueNotSupported',
  message: `Unsupported value: ${show(value)}: supported values: ${supported.map(show).join(', ')}`,
  field,
})

const duplicate = (field: string, value: unknown): StatusCause => ({
  reason: 'FieldValueDuplicate',
  message: `Duplicate value: ${show(value)}`,
  field,
})

/** Object names: an RFC 1123 subdomain of at most 253 characters. */
export const validateObjectName = (
  name: string | undefined,
  field = 'metadata.name'
): StatusCause[] => {
  if (!name) return [required(field)]
  const causes: StatusCause[] = []
  if (name.length > 253)
    causes.push(invalidValue(field, name, 'must be no more than 253 characters'))
  if (!DNS1123_SUBDOMAIN.test(name)) causes.push(invalidValue(field, name, SUBDOMAIN_MSG))
  return causes
}

/** A label value: at most 63 characters of `[-A-Za-z0-9_.]`, alphanumeric at both ends. */
export const validateLabelValue = (value: string, field: string): StatusCause[] => {
  const causes: StatusCause[] = []
  if (value.length > 63)
    causes.push(invalidValue(field, value, 'must be no more than 63 characters'))
  if (!LABEL_VALUE.test(value)) causes.push(invalidValue(field, value, LABEL_VALUE_MSG))
  return causes
}

const validateQualifiedKey = (key: string, field: string): StatusCause[] => {
  const slash = key.indexOf('/')
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined
  const name = slash >= 0 ? key.slice(slash + 1) : key
  const causes: StatusCause[] = []
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    causes.push(invalidValue(field, key, `prefix part ${SUBDOMAIN_MSG}`))
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    causes.push(
      invalidValue(
        field,
        key,
        name.length > 63 ? 'name part must be no more than 63 characters' : QUALIFIED_NAME_MSG
      )
    )
  }
  return causes
}

/** Label keys and values of one `labels` map. */
export const validateLabels = (
  labels: Record<string, string> | undefined,
  field: string
): StatusCause[] =>
  Object.entries(labels ?? {}).flatMap(([key, value]) => [
    ...validateQualifiedKey(key, field),
    ...validateLabelValue(value, field),
  ])

const nonNegative = (value: number | undefined, field: string): StatusCause[] =>
  value !== undefined && value < 0
    ? [invalidValue(field, value, 'must be greater than or equal to 0')]
    : []

/** Containers, ports, env and restartPolicy of a pod spec at `path` (`spec`, `spec.template.spec`). */
export const validatePodSpec = (
  spec: PodSpec | undefined,
  path: string,
  restartPolicies: string[]
): StatusCause[] => {
  const causes: StatusCause[] = []
  const restartPolicy = spec?.restartPolicy ?? 'Always'
  if (!restartPolicies.includes(restartPolicy)) {
    causes.push(notSupported(`${path}.restartPolicy`, restartPolicy, restartPolicies))
  }
  const groups: Array<[string, PodSpec['containers'] | undefined]> = [
    ['initContainers', spec?.initContainers],
    ['containers', spec?.containers],
  ]
  if (!spec?.containers || spec.containers.length === 0) causes.push(required(`${path}.containers`))
  const seen = new Set<string>()
  for (const [group, containers] of groups) {
    for (const [index, container] of (containers ?? []).entries()) {
      const at = `${path}.${group}[${index}]`
      if (!container.name) causes.push(required(`${at}.name`))
      else if (container.name.length > 63 || !DNS1123_LABEL.test(container.name)) {
        causes.push(invalidValue(`${at}.name`, container.name, LABEL_MSG))
      } else if (seen.has(container.name)) causes.push(duplicate(`${at}.name`, container.name))
      seen.add(container.name)
      if (!container.image) causes.push(required(`${at}.image`))
      for (const [portIndex, port] of (container.ports ?? []).entries()) {
        if (!(port.containerPort >= 1 && port.containerPort <= 65535)) {
          causes.push(
            invalidValue(
              `${at}.ports[${portIndex}].containerPort`,
              port.containerPort,
              'must be between 1 and 65535, inclusive'
            )
          )
        }
      }
      for (const [envIndex, env] of (container.env ?? []).entries()) {
        if (!env.name) causes.push(required(`${at}.env[${envIndex}].name`))
      }
    }
  }
  causes.push(
    ...nonNegative(spec?.terminationGracePeriodSeconds, `${path}.terminationGracePeriodSeconds`)
  )
  return causes
}

/** Everything the real server checks on `POST …/jobs` that this simulator models. */
export const validateJob = (job: Job): StatusCause[] => {
  const name = job.metadata?.name
  const causes = validateObjectName(name)
  // The name becomes the `job-name` label value of every pod, hence the label limit.
  if (name && name.length > 63 && name.length <= 253) {
    causes.push(invalidValue('metadata.name', name, 'must be no more than 63 characters'))
  }
  causes.push(...validateLabels(job.metadata?.labels, 'metadata.labels'))
  causes.push(
    ...validateLabels(job.spec?.template?.metadata?.labels, 'spec.template.metadata.labels')
  )
  const spec = job.spec
  if (!spec?.template) return [...causes, required('spec.template')]
  causes.push(...nonNegative(spec.backoffLimit, 'spec.backoffLimit'))
  causes.push(...nonNegative(spec.completions, 'spec.completions'))
  causes.push(...nonNegative(spec.parallelism, 'spec.parallelism'))
  causes.push(...nonNegative(spec.activeDeadlineSeconds, 'spec.activeDeadlineSeconds'))
  causes.push(...nonNegative(spec.ttlSecondsAfterFinished, 'spec.ttlSecondsAfterFinished'))
  const policies = spec.podFailurePolicy ? ['Never'] : ['OnFailure', 'Never']
  causes.push(...validatePodSpec(spec.template.spec, 'spec.template.spec', policies))
  for (const [index, rule] of (spec.podFailurePolicy?.rules ?? []).entries()) {
    const actions = ['Count', 'FailIndex', 'FailJob', 'Ignore']
    if (!actions.includes(rule.action)) {
      causes.push(
        notSupported(`spec.podFailurePolicy.rules[${index}].action`, rule.action, actions)
      )
    }
  }
  return causes
}

/** Pods created directly (not through a Job). */
export const validatePod = (pod: Pod): StatusCause[] => [
  ...validateObjectName(pod.metadata?.name),
  ...validateLabels(pod.metadata?.labels, 'metadata.labels'),
  ...validatePodSpec(pod.spec, 'spec', ['Always', 'OnFailure', 'Never']),
]
