import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { OwnRedis } from './own-redis.ts'
import { waitFor } from './wait.ts'

const run = promisify(execFile)

/** A cluster node: a redis-server with cluster mode on (2 s node timeout, no delay before a replica's first sync) and, like OwnRedis, the AOF with fsync always. */
function clusterNode (): Promise<OwnRedis> {
  return OwnRedis.start({
    args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000', '--repl-diskless-sync-delay', '0']
  })
}

/**
 * A Redis Cluster of the test's own: `masters` redis-server processes on
 * free ports, joined by `redis-cli --cluster create` with no replicas, the
 * 16384 slots spread over them. Replicas can be added to a master later.
 */
export class OwnCluster {
  readonly nodes: OwnRedis[]

  private constructor (nodes: OwnRedis[]) {
    this.nodes = nodes
  }

  static async start (masters = 3): Promise<OwnCluster> {
    const nodes: OwnRedis[] = []
    const cluster = new OwnCluster(nodes)
    try {
      for (let i = 0; i < masters; i++) nodes.push(await clusterNode())
      await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'])
      await cluster.#settled()
    } catch (err) {
      await cluster.destroy()
      throw err
    }
    return cluster
  }

  /** `redis+cluster://` with two of the nodes as seeds. */
  get url (): string {
    return `redis+cluster://${this.nodes.slice(0, 2).map((n) => `127.0.0.1:${n.port}`).join(',')}`
  }

  /** The node that owns the slot of `key`. */
  async ownerOf (key: string): Promise<OwnRedis> {
    const slot = await this.#ask(this.nodes[0]!, 'CLUSTER', 'KEYSLOT', key) as number
    const ranges = await this.#ask(this.nodes[0]!, 'CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
    const range = ranges.find(([from, to]) => slot >= from && slot <= to)
    const owner = this.nodes.find((n) => n.port === range?.[2][1])
    if (owner === undefined) throw new Error(`no node owns slot ${slot}`)
    return owner
  }

  /** Start a node and make it a replica of `master`; resolves once the master sees it online. */
  async addReplica (master: OwnRedis): Promise<OwnRedis> {
    const replica = await clusterNode()
    this.nodes.push(replica)
    const masterId = String(await this.#ask(master, 'CLUSTER', 'MYID'))
    await run('redis-cli', ['--cluster', 'add-node', `127.0.0.1:${replica.port}`, `127.0.0.1:${master.port}`,
      '--cluster-slave', '--cluster-master-id', masterId])
    await waitFor(async () => /slave0:.*state=online/.test(String(await this.#ask(master, 'INFO', 'replication'))), 15_000, 'cluster replica online')
    await this.#settled()
    return replica
  }

  /** Stop every node and remove their files. */
  async destroy (): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.destroy()))
  }

  /** Every node says the cluster is ok and agrees on the configuration. */
  async #settled (): Promise<void> {
    await waitFor(async () => {
      const states = await Promise.all(this.nodes.map((n) => this.#ask(n, 'CLUSTER', 'INFO')))
      return states.every((s) => /cluster_state:ok/.test(String(s)))
    }, 15_000, 'cluster_state:ok on every node')
  }

  async #ask (node: OwnRedis, ...args: string[]): Promise<unknown> {
    const client = new Redis(node.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      await client.connect()
      return await client.call(args[0]!, ...args.slice(1))
    } finally {
      client.disconnect()
    }
  }
}
