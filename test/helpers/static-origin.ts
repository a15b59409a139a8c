import { createServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'
import Fastify from 'fastify'
import fastifyStatic from '@fastify/static'

/**
 * A real HTTP origin for tests: @fastify/static over a directory (Range,
 * ETag, Last-Modified, 304 as a production file server does them), with
 * the response fields `headers` gives for a file's path, if any.
 */
export async function startStaticOrigin (root: string, headers?: (path: string) => Record<string, string>): Promise<{ url: string, close: () => Promise<void> }> {
  const app = Fastify({ logger: false })
  await app.register(fastifyStatic, {
    root,
    etag: true,
    lastModified: true,
    acceptRanges: true,
    cacheControl: false,
    ...(headers === undefined ? {} : { setHeaders: (reply, path) => { reply.headers(headers(path)) } })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/`, close: () => app.close() }
}

/** An origin that accepts connections and never answers (for 504 tests). */
export async function startStalledOrigin (): Promise<{ url: string, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/`,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/** A URL whose port nothing listens on. */
export async function deadOriginUrl (): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return `http://127.0.0.1:${port}/`
}
