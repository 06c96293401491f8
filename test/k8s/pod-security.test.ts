/**
 * @module test/k8s/pod-security.test
 *
 * The restricted Pod Security checks accept Ferry's recommended pod spec and reject each
 * forbidden setting with the Pod Security Admission wording.
 */
import { describe, expect, it } from 'vitest'
import { restrictedDenial, restrictedViolations } from './pod-security.ts'
import type { Pod } from './types.ts'

type PodSpec = NonNullable<Pod['spec']>

const compliant = (): PodSpec => ({
  securityContext: {
    runAsNonRoot: true,
    runAsUser: 10001,
    seccompProfile: { type: 'RuntimeDefault' },
  },
  volumes: [{ name: 'tmp', emptyDir: { sizeLimit: '256Mi' } }],
  containers: [
    {
      name: 'main',
      image: 'ferry/sidecar:1',
      securityContext: {
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        readOnlyRootFilesystem: true,
      },
    },
  ],
})

describe('Pod Security "restricted"', () => {
  it('accepts the recommended session pod spec', () => {
    expect(restrictedViolations(compliant())).toEqual([])
  })

  it('reports the four settings a bare container misses, in admission order and wording', () => {
    const spec: PodSpec = { containers: [{ name: 'main', image: 'node:24' }] }
    expect(restrictedDenial(restrictedViolations(spec))).toBe(
      'violates PodSecurity "restricted:latest": ' +
        'allowPrivilegeEscalation != false (container "main" must set securityContext.allowPrivilegeEscalation=false), ' +
        'unrestricted capabilities (container "main" must set securityContext.capabilities.drop=["ALL"]), ' +
        'runAsNonRoot != true (pod or container "main" must set securityContext.runAsNonRoot=true), ' +
        'seccompProfile (pod or container "main" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )
  })

  it('rejects host namespaces, hostPath, privileged, root and added capabilities', () => {
    const spec = compliant()
    spec.hostNetwork = true
    spec.volumes = [{ name: 'host', hostPath: { path: '/' } }]
    spec.securityContext!.runAsUser = 0
    spec.containers[0]!.securityContext!.privileged = true
    spec.containers[0]!.securityContext!.capabilities!.add = ['SYS_ADMIN', 'NET_BIND_SERVICE']
    expect(restrictedViolations(spec)).toEqual([
      'unrestricted capabilities (container "main" must not include "SYS_ADMIN" in securityContext.capabilities.add)',
      'host namespaces (hostNetwork=true)',
      'hostPath volumes (volume "host")',
      'privileged (container "main" must not set securityContext.privileged=true)',
      'restricted volume types (volume "host" uses restricted volume type "hostPath")',
      'runAsUser=0 (pod must not set runAsUser=0)',
    ])
  })

  it('accepts Localhost seccomp and rejects Unconfined', () => {
    const spec = compliant()
    spec.securityContext!.seccompProfile = { type: 'Localhost', localhostProfile: 'p.json' }
    expect(restrictedViolations(spec)).toEqual([])
    spec.securityContext!.seccompProfile = { type: 'Unconfined' }
    expect(restrictedViolations(spec)).toEqual([
      'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")',
    ])
  })
})
