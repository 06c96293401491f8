/**
 * @module test/k8s/sim-failures
 *
 * How a test asks the kubelet simulator for a failure: annotation `sim.ferry.dev/fail: <mode>`
 * on the pod (template), or the image `ferry.test/fail:<mode>`. Images are otherwise ignored
 * (the command runs locally), except that a malformed reference is InvalidImageName as for real.
 */

export const FAIL_ANNOTATION = 'sim.ferry.dev/fail'
/** Delay before the container starts (for `slow-start`, default 1000 ms). */
export const START_DELAY_ANNOTATION = 'sim.ferry.dev/start-delay-ms'
/** Delay after start before `oom`/`evict` strike (default 0: right after Running). */
export const FAIL_AFTER_ANNOTATION = 'sim.ferry.dev/fail-after-ms'

export const FAILURE_MODES = [
  'image-pull',
  'invalid-image',
  'unschedulable',
  'oom',
  'crash',
  'slow-start',
  'config',
  'evict',
] as const

export type FailureMode = (typeof FAILURE_MODES)[number]

const isMode = (value: string | undefined): value is FailureMode =>
  (FAILURE_MODES as readonly string[]).includes(value ?? '')

// distribution/reference grammar: [domain[:port]/]path[:tag][@digest]
const DOMAIN = String.raw`(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?`
const COMPONENT = String.raw`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
const REFERENCE = new RegExp(
  String.raw`^(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`
)

export const isValidImageReference = (image: string): boolean => REFERENCE.test(image)

interface PodLike {
  metadata?: { annotations?: Record<string, string> }
  spec?: { containers?: Array<{ image?: string }> }
}

/** The failure a pod asks for, if any (annotation first, then the image). */
export const failureModeOf = (pod: PodLike): FailureMode | undefined => {
  const annotated = pod.metadata?.annotations?.[FAIL_ANNOTATION]
  if (isMode(annotated)) return annotated
  const image = pod.spec?.containers?.[0]?.image ?? ''
  const match = /^ferry\.test\/fail:([a-z-]+)$/.exec(image)
  if (match && isMode(match[1])) return match[1]
  if (image && !isValidImageReference(image)) return 'invalid-image'
  return undefined
}

/** A numeric annotation in milliseconds, or `fallback`. */
export const annotationMs = (pod: PodLike, key: string, fallback: number): number => {
  const value = Number(pod.metadata?.annotations?.[key])
  return Number.isFinite(value) && value >= 0 ? value : fallback
}
