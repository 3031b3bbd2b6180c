import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Secret } from '../lib/secret.ts';

/** Constant-time comparison of a bearer token with the configured admin token. */
export function bearerMatches(header: string | undefined, token: Secret): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const given = createHash('sha256').update(header.slice('Bearer '.length).trim()).digest();
  const want = createHash('sha256').update(token.reveal()).digest();
  return timingSafeEqual(given, want);
}

export function requireAdmin(token: Secret) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    if (!bearerMatches(req.headers.authorization, token)) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'admin token required (Authorization: Bearer …)' });
    }
  };
}
