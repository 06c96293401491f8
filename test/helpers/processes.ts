/**
 * @module test/helpers/processes
 *
 * Linux process-table helpers (read from `/proc`), so tests can find the sidecars and servers a
 * bridge started, check that they are gone, and clean up after themselves. They only ever signal
 * processes the test itself (directly or through a bridge it started) created.
 */
import { readdirSync, readFileSync } from 'node:fs'

interface ProcInfo {
  pid: number
  ppid: number
  state: string
}

const statOf = (pid: number): ProcInfo | undefined => {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // `pid (comm) state ppid …`; comm may itself contain spaces and parentheses.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { pid, state: rest[0] ?? '?', ppid: Number(rest[1]) }
}

const allPids = (): number[] =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)

/** The command line of a process, arguments joined by spaces ('' when it is gone). */
export const commandLine = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
  } catch {
    return ''
  }
}

/** Live processes whose command line contains `marker`. */
export const processesWith = (marker: string): number[] =>
  allPids().filter(
    (pid) => pid !== process.pid && commandLine(pid).includes(marker) && isAlive(pid)
  )

/** Direct children of `pid`. */
export const childrenOf = (pid: number): number[] =>
  allPids().filter((candidate) => statOf(candidate)?.ppid === pid)

/** Every descendant of `pid`, depth first. */
export const descendantsOf = (pid: number): number[] => {
  const all = allPids()
    .map(statOf)
    .filter((info): info is ProcInfo => info !== undefined)
  const result: number[] = []
  const walk = (parent: number) => {
    for (const info of all) {
      if (info.ppid === parent) {
        result.push(info.pid)
        walk(info.pid)
      }
    }
  }
  walk(pid)
  return result
}

/** Sidecar processes (`sidecar.mjs`) whose parent is `pid`. */
export const sidecarsOf = (pid: number): number[] =>
  childrenOf(pid).filter((child) => commandLine(child).includes('sidecar.mjs'))

/** Whether `pid` is a live process (zombies count as gone). */
export const isAlive = (pid: number): boolean => {
  const info = statOf(pid)
  return info !== undefined && info.state !== 'Z' && info.state !== 'X'
}

/** Waits until none of `pids` is alive; resolves with those still alive at the deadline. */
export const waitGone = async (pids: number[], timeoutMs = 10_000): Promise<number[]> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const alive = pids.filter(isAlive)
    if (alive.length === 0 || Date.now() >= deadline) return alive
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Sends `signal` to each pid's process group and to the pid itself, ignoring gone ones. */
export const killTrees = (pids: number[], signal: NodeJS.Signals = 'SIGKILL'): void => {
  for (const pid of pids) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, signal)
      } catch {
        // already gone, or not a group leader
      }
    }
  }
}

/**
 * Waits until none of `pids` is alive; resolves with a description (`pid command line`) of each
 * one still running at the deadline, so a failed `toEqual([])` says what was left behind.
 */
export const leftBehind = async (pids: number[], timeoutMs = 10_000): Promise<string[]> =>
  (await waitGone(pids, timeoutMs)).map((pid) => `${pid} ${commandLine(pid).slice(0, 300)}`)
