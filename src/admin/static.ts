// The dashboard's static assets (src/admin/static, shipped in the package): read once at
// start into memory (a few kB), served with an ETag. Only files present in that folder are
// ever served, so no request path reaches the file system.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpError } from './http.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

// Beside this file in a checkout (src/admin/static); in an installed package this file runs
// compiled from dist/src/admin while the assets ship, uncompiled, in src/admin/static.
const beside = fileURLToPath(new URL('./static/', import.meta.url));
export const STATIC_DIR = existsSync(beside) ? beside : fileURLToPath(new URL('../../../src/admin/static/', import.meta.url));

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

export class StaticAssets {
  private readonly files = new Map<string, Asset>();

  constructor(dir: string = STATIC_DIR) {
    for (const name of readdirSync(dir)) {
      const type = TYPES[extname(name)];
      if (!type) continue;
      const body = readFileSync(`${dir}/${name}`);
      this.files.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` });
    }
    if (!this.files.has('index.html')) throw new Error(`dashboard assets: no index.html in ${dir}`);
  }

  /** Total bytes of the page and its assets (the report's "page size"). */
  get totalBytes(): number {
    let n = 0;
    for (const f of this.files.values()) n += f.body.length;
    return n;
  }

  answer(name: string): { status: number; body: Buffer; contentType: string; headers: Record<string, string> } {
    const f = this.files.get(name);
    if (!f) throw new HttpError(404, `no such dashboard asset: ${JSON.stringify(name)}`);
    return {
      status: 200,
      body: f.body,
      contentType: f.type,
      headers: {
        etag: f.etag,
        'cache-control': 'no-cache',
        // The page loads only its own assets and talks only to this peer.
        'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
        'x-content-type-options': 'nosniff',
      },
    };
  }

  etag(name: string): string | undefined {
    return this.files.get(name)?.etag;
  }
}
