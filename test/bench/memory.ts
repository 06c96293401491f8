/**
 * Memory of a process tree from /proc: PSS (proportional set size — shared pages
 * split between the processes sharing them, so summing over a tree is fair) and RSS.
 */
import { readFileSync, readdirSync } from 'node:fs'

const parentOf = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } catch {
    return undefined
  }
}

/** `root` and every descendant process. */
export const processTree = (root: number): number[] => {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry)
    if (!Number.isInteger(pid)) continue
    const parent = parentOf(pid)
    if (parent === undefined) continue
    children.set(parent, [...(children.get(parent) ?? []), pid])
  }
  const tree: number[] = []
  const walk = (pid: number) => {
    tree.push(pid)
    for (const child of children.get(pid) ?? []) walk(child)
  }
  walk(root)
  return tree
}

const rollupKb = (pid: number, field: 'Pss' | 'Rss'): number => {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)
    return match ? Number(match[1]) : 0
  } catch {
    return 0
  }
}

/** Total PSS and RSS of the processes, in bytes. */
export const memoryOf = (pids: number[]) => ({
  pss: pids.reduce((sum, pid) => sum + rollupKb(pid, 'Pss'), 0) * 1024,
  rss: pids.reduce((sum, pid) => sum + rollupKb(pid, 'Rss'), 0) * 1024,
  processes: pids.length,
})
