import type { FastifyInstance } from 'fastify'
import { BadRequestError, NotFoundError, StreammeterError } from '../../errors.ts'
import { parseMediaPath } from '../media/request-path.ts'
import type { Origin } from '../origin/origin.ts'
import { accessApi } from './access-api.ts'

/** What the file-check endpoints use. */
export interface FileCheckContext {
  /** `ACCESS_API_KEY`; without it the endpoints answer 403. */
  apiKey: string | undefined
  origin: Origin
}

/** One path's answer, in the Python proxy's shape. */
export interface FileCheck {
  path: string
  exists: boolean
  /** Bytes, when the origin says. */
  size?: number
  /** Why the origin could not tell (it is down, it timed out); `exists` is then false. */
  error?: string
}

/** Most paths one batch may ask about (the Python proxy's limit). */
export const MAX_BATCH_PATHS = 100
/** Origin lookups of one batch at a time. */
const BATCH_CONCURRENCY = 8
/** A path in a body: at most 2,048 bytes decoded (request-path.ts), a little more as JSON. */
const SINGLE_BODY_LIMIT = 16 * 1024
const BATCH_BODY_LIMIT = MAX_BATCH_PATHS * SINGLE_BODY_LIMIT

/**
 * The Python proxy's file-check API (docs/access.md#file-checks), behind
 * `ACCESS_API_KEY`: `POST /api/file/check {path}` → `{path, exists, size?,
 * error?}`; `POST /api/file/check/batch {paths: [≤100]}` → `{results, total,
 * exists_count, not_found_count, error_count}`. A path is looked up at the
 * origin exactly as a media request for it would be (a HEAD, the same path
 * rules and the same confinement to ORIGIN_ROOT), so it tells only what a
 * client could learn by asking for the file: a dotfile or a path outside
 * the root does not exist.
 */
export function registerFileCheckRoutes (app: FastifyInstance, ctx: FileCheckContext): void {
  const route = accessApi(app, ctx.apiKey)
  const post = (url: string, bodyLimit: number, answer: (body: Record<string, unknown>) => Promise<unknown> | StreammeterError): void => {
    route('POST', url, bodyLimit, ({ body }) => answer(body))
  }

  post('/api/file/check', SINGLE_BODY_LIMIT, ({ path }) => {
    if (typeof path !== 'string') return new BadRequestError('the body must be {"path": "<path>"}')
    const origin = originPath(path)
    return origin instanceof BadRequestError ? origin : check(ctx.origin, path, origin)
  })

  post('/api/file/check/batch', BATCH_BODY_LIMIT, ({ paths }) => {
    if (!Array.isArray(paths) || paths.length === 0 || paths.length > MAX_BATCH_PATHS || !paths.every((p) => typeof p === 'string')) {
      return new BadRequestError(`the body must be {"paths": [...]} with 1 to ${MAX_BATCH_PATHS} path strings`)
    }
    const asked = paths as string[]
    const origins = asked.map(originPath)
    const bad = origins.findIndex((o) => o instanceof BadRequestError)
    if (bad !== -1) return new BadRequestError(`paths[${bad}]: ${(origins[bad] as BadRequestError).message}`)
    return checkAll(ctx.origin, asked, origins as Array<string | NotFoundError>)
  })
}

/** Each path's {@link check}, a few at a time, in the order asked, with the batch's counts. */
async function checkAll (origin: Origin, paths: readonly string[], origins: ReadonlyArray<string | NotFoundError>): Promise<unknown> {
  const results = new Array<FileCheck>(paths.length)
  let next = 0
  const worker = async (): Promise<void> => {
    for (let i = next++; i < paths.length; i = next++) results[i] = await check(origin, paths[i] as string, origins[i] as string | NotFoundError)
  }
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, paths.length) }, worker))
  const exists = results.filter((r) => r.exists).length
  const errors = results.filter((r) => r.error !== undefined).length
  return { results, total: results.length, exists_count: exists, not_found_count: results.length - exists - errors, error_count: errors }
}

/**
 * The origin path of a path as the API's caller writes it (decoded, with or
 * without its leading `/`), by the media route's rules; a NotFoundError for
 * a dotfile, which the media route answers 404.
 */
export function originPath (path: string): string | NotFoundError | BadRequestError {
  if (path === '' || path === '/') return new BadRequestError('the path is empty')
  let raw: string
  try {
    raw = '/' + (path.startsWith('/') ? path.slice(1) : path).split('/').map(encodeURIComponent).join('/')
  } catch {
    return new BadRequestError('the path is not valid Unicode')
  }
  try {
    return parseMediaPath(raw)
  } catch (err) {
    if (err instanceof NotFoundError || err instanceof BadRequestError) return err
    throw err
  }
}

async function check (origin: Origin, path: string, originPathOrHidden: string | NotFoundError): Promise<FileCheck> {
  if (originPathOrHidden instanceof NotFoundError) return { path, exists: false }
  try {
    const answer = await origin.fetch({ path: originPathOrHidden, method: 'HEAD', headers: {}, whole: true })
    answer.body?.destroy()
    return answer.length === undefined ? { path, exists: true } : { path, exists: true, size: answer.length }
  } catch (err) {
    if (err instanceof NotFoundError) return { path, exists: false }
    return { path, exists: false, error: err instanceof StreammeterError ? err.message : 'the origin could not be asked' }
  }
}
