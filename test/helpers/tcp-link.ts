import { connect, createServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'

/**
 * A TCP relay on 127.0.0.1 to `targetPort`, for a network fault between two
 * processes (a replica and its master): `hold()` stops forwarding in both
 * directions (what arrives meanwhile is kept in memory), `release()` sends
 * it on, `cut()` closes every connection and drops what was held, as a
 * partition that ends with a crash would.
 */
export class TcpLink {
  readonly port: number
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  readonly #pending: Array<() => void> = []
  #held = false

  private constructor (server: Server) {
    this.#server = server
    this.port = (server.address() as AddressInfo).port
  }

  static async start (targetPort: number): Promise<TcpLink> {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const link = new TcpLink(server)
    server.on('connection', (inbound) => link.#join(inbound, targetPort))
    return link
  }

  /** Stop forwarding; keep what arrives. */
  hold (): void {
    this.#held = true
  }

  /** Forward again, what was held first. */
  release (): void {
    this.#held = false
    for (const send of this.#pending.splice(0)) send()
  }

  /** Close every connection now, dropping what was held. New connections are still relayed. */
  cut (): void {
    this.#pending.length = 0
    this.#held = false
    for (const s of this.#sockets) s.destroy()
  }

  async close (): Promise<void> {
    this.cut()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  #join (inbound: Socket, targetPort: number): void {
    const outbound = connect(targetPort, '127.0.0.1')
    for (const [from, to] of [[inbound, outbound], [outbound, inbound]] as const) {
      this.#sockets.add(from)
      from.on('data', (chunk: Buffer) => {
        const send = (): void => { to.write(chunk) }
        if (this.#held) this.#pending.push(send)
        else send()
      })
      from.on('error', () => to.destroy())
      from.on('close', () => {
        this.#sockets.delete(from)
        to.destroy()
      })
    }
  }
}
