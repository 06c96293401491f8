/**
 * @module
 * Tests for reading a session pod's status: each state the kubelet and scheduler
 * report (notes/kubernetes.md §7) maps to ready, a failure with a message worth
 * showing the client, or still pending.
 */
import { describe, expect, it } from 'vitest'
import type { V1ContainerStatus, V1Pod, V1PodCondition } from '@kubernetes/client-node'
import { podState } from './pod-readiness.ts'

const IMAGE = 'ghcr.io/acme/mcp:1.2'

const container = (
  state: V1ContainerStatus['state'],
  extra: Partial<V1ContainerStatus> = {}
): V1ContainerStatus => ({
  name: 'mcp',
  image: IMAGE,
  imageID: '',
  ready: false,
  restartCount: 0,
  state,
  ...extra,
})

const condition = (
  type: string,
  status: 'True' | 'False',
  reason?: string,
  message?: string
): V1PodCondition => ({
  type,
  status,
  ...(reason ? { reason } : {}),
  ...(message ? { message } : {}),
})

const pod = (status: V1Pod['status']): V1Pod => ({
  metadata: { name: 'ferry-abc-x7k2p', namespace: 'sessions' },
  status,
})

const waiting = (reason: string, message?: string) =>
  pod({
    phase: 'Pending',
    podIP: '10.1.2.3',
    conditions: [condition('PodScheduled', 'True'), condition('Ready', 'False')],
    containerStatuses: [container({ waiting: { reason, ...(message ? { message } : {}) } })],
  })

describe('podState', () => {
  it('is ready once Ready=True and the pod has an IP', () => {
    expect(
      podState(
        pod({
          phase: 'Running',
          podIP: '10.1.2.3',
          conditions: [condition('PodScheduled', 'True'), condition('Ready', 'True')],
          containerStatuses: [container({ running: {} }, { ready: true })],
        })
      )
    ).toEqual({ kind: 'ready', podIP: '10.1.2.3' })
  })

  it('is still pending while Running but not Ready, or Ready without an IP', () => {
    expect(
      podState(
        pod({
          phase: 'Running',
          podIP: '10.1.2.3',
          conditions: [condition('Ready', 'False')],
          containerStatuses: [container({ running: {} })],
        })
      )
    ).toEqual({ kind: 'pending' })
    expect(podState(pod({ phase: 'Running', conditions: [condition('Ready', 'True')] }))).toEqual({
      kind: 'pending',
    })
  })

  it('is pending for a pod without status, or one still creating its container', () => {
    expect(podState({ metadata: { name: 'p' } })).toEqual({ kind: 'pending' })
    expect(podState(pod({ phase: 'Pending' }))).toEqual({ kind: 'pending' })
    expect(podState(waiting('ContainerCreating'))).toEqual({ kind: 'pending' })
    expect(podState(waiting('PodInitializing'))).toEqual({ kind: 'pending' })
  })

  it.each(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull'])(
    'fails with image_pull on %s, naming the image and the reason',
    (reason) => {
      const state = podState(waiting(reason, `failed to resolve reference "${IMAGE}": not found`))
      expect(state).toEqual({
        kind: 'failed',
        failure: 'image_pull',
        message: `the image ${IMAGE} cannot be pulled (${reason}: failed to resolve reference "${IMAGE}": not found)`,
      })
    }
  )

  it.each(['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError'])(
    'fails with config on %s, with the kubelet’s message',
    (reason) => {
      const state = podState(waiting(reason, 'secret "api-keys" not found'))
      expect(state).toEqual({
        kind: 'failed',
        failure: 'config',
        message: `the container mcp cannot be created (${reason}: secret "api-keys" not found)`,
      })
    }
  )

  it('reports a waiting reason without a message', () => {
    expect(podState(waiting('ErrImagePull'))).toMatchObject({
      failure: 'image_pull',
      message: `the image ${IMAGE} cannot be pulled (ErrImagePull)`,
    })
  })

  it('fails with oom when the container is OOM-killed before it was ready (exit code and reason)', () => {
    const state = podState(
      pod({
        phase: 'Failed',
        containerStatuses: [container({ terminated: { exitCode: 137, reason: 'OOMKilled' } })],
      })
    )
    expect(state).toEqual({
      kind: 'failed',
      failure: 'oom',
      message: 'the container mcp was OOM-killed (exit code 137) before it was ready',
    })
  })

  it('fails with exited when the container exits before it was ready (exit code and reason)', () => {
    expect(
      podState(
        pod({
          phase: 'Failed',
          containerStatuses: [container({ terminated: { exitCode: 1, reason: 'Error' } })],
        })
      )
    ).toEqual({
      kind: 'failed',
      failure: 'exited',
      message: 'the container mcp exited with code 1 (Error) before it was ready',
    })
    expect(
      podState(
        pod({
          phase: 'Succeeded',
          containerStatuses: [container({ terminated: { exitCode: 0, reason: 'Completed' } })],
        })
      )
    ).toMatchObject({
      failure: 'exited',
      message: 'the container mcp exited with code 0 (Completed) before it was ready',
    })
  })

  it('ignores init containers that completed, and reports those that failed or cannot start', () => {
    const inject = (state: V1ContainerStatus['state']) =>
      pod({
        phase: 'Pending',
        initContainerStatuses: [
          container(state, { name: 'ferry-inject', image: 'ghcr.io/ferry-mcp/sidecar:0.1.0' }),
        ],
        containerStatuses: [container({ waiting: { reason: 'PodInitializing' } })],
      })
    expect(podState(inject({ terminated: { exitCode: 0, reason: 'Completed' } }))).toEqual({
      kind: 'pending',
    })
    expect(podState(inject({ terminated: { exitCode: 1, reason: 'Error' } }))).toEqual({
      kind: 'failed',
      failure: 'exited',
      message: 'the container ferry-inject exited with code 1 (Error) before it was ready',
    })
    expect(podState(inject({ waiting: { reason: 'ImagePullBackOff' } }))).toEqual({
      kind: 'failed',
      failure: 'image_pull',
      message: 'the image ghcr.io/acme/mcp:1.2 cannot be pulled (ImagePullBackOff)'.replace(
        IMAGE,
        'ghcr.io/ferry-mcp/sidecar:0.1.0'
      ),
    })
  })

  it('fails when the pod itself failed (eviction) or completed, with its reason', () => {
    expect(
      podState(
        pod({
          phase: 'Failed',
          reason: 'Evicted',
          message: 'The node was low on resource: memory.',
          conditions: [condition('DisruptionTarget', 'True', 'TerminationByKubelet')],
        })
      )
    ).toEqual({
      kind: 'failed',
      failure: 'exited',
      message:
        'the pod failed (Evicted: The node was low on resource: memory.) before it was ready',
    })
    // The eviction, not the SIGKILL it caused, is the reason worth showing.
    expect(
      podState(
        pod({
          phase: 'Failed',
          reason: 'Evicted',
          message: 'The node was low on resource: memory.',
          containerStatuses: [container({ terminated: { exitCode: 137, reason: 'Error' } })],
        })
      )
    ).toMatchObject({ failure: 'exited', message: expect.stringContaining('(Evicted: The node') })
    expect(podState(pod({ phase: 'Succeeded' }))).toEqual({
      kind: 'failed',
      failure: 'exited',
      message: 'the pod completed before it was ready',
    })
  })

  it('a failed container wins over a Ready condition not yet updated', () => {
    expect(
      podState(
        pod({
          phase: 'Running',
          podIP: '10.1.2.3',
          conditions: [condition('Ready', 'True')],
          containerStatuses: [container({ terminated: { exitCode: 137, reason: 'OOMKilled' } })],
        })
      )
    ).toMatchObject({ kind: 'failed', failure: 'oom' })
  })

  it('stays pending but says why when the scheduler finds no node', () => {
    const message = '0/3 nodes are available: 3 Insufficient cpu.'
    expect(
      podState(
        pod({
          phase: 'Pending',
          conditions: [condition('PodScheduled', 'False', 'Unschedulable', message)],
        })
      )
    ).toEqual({ kind: 'pending', unschedulable: message })
    expect(
      podState(
        pod({ phase: 'Pending', conditions: [condition('PodScheduled', 'False', 'Unschedulable')] })
      )
    ).toEqual({ kind: 'pending', unschedulable: 'no node can run the pod' })
    // Other reasons (scheduling gates, a scheduler that has not looked yet) are no verdict.
    expect(
      podState(
        pod({
          phase: 'Pending',
          conditions: [condition('PodScheduled', 'False', 'SchedulingGated')],
        })
      )
    ).toEqual({ kind: 'pending' })
  })
})
