// Durable Raft storage in one directory:
//   log.<gen>        append-only records, one per entry: [u32 length][u32 crc32][JSON]
//                    A record at index i supersedes every earlier record at index >= i.
//   hardstate.json   { term, vote, commit } + crc, replaced by write-tmp/fsync/rename.
//   snapshot.json    { meta, data, gen } + crc, same; `gen` names the live log file.
// A new log generation is written (and fsynced) before the snapshot that points at it,
// so a crash leaves either the old pair or the new pair, never a mix.
// Recovery truncates a torn tail of the live log (a last record that is incomplete or
// fails its checksum) and refuses, with an error naming file and offset, a log whose
// damaged record has intact data after it.
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Entry, HardState, Ready, Snapshot } from '../core/types.js';
import { crc32 } from './crc32.js';
import { EMPTY_HARD_STATE, type RaftStorage, type StoredState } from './storage.js';

const HEADER = 8;

export class StorageCorruptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageCorruptionError';
  }
}

interface SnapshotFile<S> {
  snapshot: Snapshot<S> | null;
  gen: number;
}

/** T and S must be JSON-serialisable. */
export class DiskStorage<T, S> implements RaftStorage<T, S> {
  private readonly dir: string;
  private gen = 0;
  private fd = -1;
  private hardState: HardState = { ...EMPTY_HARD_STATE };
  private snapshot: Snapshot<S> | null = null;
  private entries: Entry<T>[] = [];
  /** Records in the live log file (for deciding when to rewrite it). */
  private records = 0;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    this.recover();
  }

  load(): StoredState<T, S> {
    return { hardState: { ...this.hardState }, snapshot: this.snapshot, entries: [...this.entries] };
  }

  save(rd: Pick<Ready<T, S>, 'hardState' | 'entries' | 'snapshot'>): void {
    if (rd.snapshot) {
      this.installLog(rd.snapshot, []);
    }
    if (rd.entries.length) {
      const first = rd.entries[0].index;
      const keep = first - this.offset() - 1;
      if (keep < 0 || keep > this.entries.length) {
        throw new Error(`disk storage: entries from ${first} do not follow the stored log`);
      }
      this.entries.length = keep;
      const bufs: Buffer[] = [];
      for (const e of rd.entries) {
        this.entries.push(e);
        bufs.push(encodeRecord(e));
      }
      const buf = Buffer.concat(bufs);
      writeAll(this.fd, buf);
      fsyncSync(this.fd);
      this.records += rd.entries.length;
      // Superseded records pile up after many conflicts; rewrite when mostly garbage.
      if (this.records > 1024 && this.records > 4 * this.entries.length) this.installLog(this.snapshot, this.entries);
    }
    if (rd.hardState) {
      this.hardState = { ...rd.hardState };
      writeAtomic(this.dir, 'hardstate.json', JSON.stringify(this.hardState));
    }
  }

  compact(snap: Snapshot<S>): void {
    const drop = snap.meta.index - this.offset();
    if (drop <= 0) return;
    this.installLog(snap, this.entries.slice(drop));
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private offset(): number {
    return this.snapshot ? this.snapshot.meta.index : 0;
  }

  /** Write a new log generation holding `entries`, then point the snapshot file at it. */
  private installLog(snap: Snapshot<S> | null, entries: Entry<T>[]): void {
    const gen = this.gen + 1;
    const name = join(this.dir, `log.${gen}`);
    const fd = openSync(name, 'w');
    if (entries.length) writeAll(fd, Buffer.concat(entries.map(encodeRecord)));
    fsyncSync(fd);
    fsyncDir(this.dir);
    const file: SnapshotFile<S> = { snapshot: snap, gen };
    writeAtomic(this.dir, 'snapshot.json', JSON.stringify(file));
    const old = this.gen;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = openSync(name, 'a');
    this.gen = gen;
    this.snapshot = snap;
    this.entries = [...entries];
    this.records = entries.length;
    const oldName = join(this.dir, `log.${old}`);
    if (existsSync(oldName)) unlinkSync(oldName);
  }

  private recover(): void {
    const hs = readChecked<HardState>(this.dir, 'hardstate.json');
    if (hs) this.hardState = hs;
    const sf = readChecked<SnapshotFile<S>>(this.dir, 'snapshot.json');
    if (sf) {
      this.snapshot = sf.snapshot;
      this.gen = sf.gen;
    }
    // Leftovers of an interrupted rewrite: other generations and temp files.
    for (const f of readdirSync(this.dir)) {
      if ((f.startsWith('log.') && f !== `log.${this.gen}`) || f.endsWith('.tmp')) unlinkSync(join(this.dir, f));
    }
    const name = join(this.dir, `log.${this.gen}`);
    if (!existsSync(name)) {
      closeSync(openSync(name, 'w'));
      fsyncDir(this.dir);
    }
    const buf = readFileSync(name);
    const { entries, goodLength, records } = decodeLog<T>(buf, name);
    if (goodLength < buf.length) {
      const fd = openSync(name, 'r+');
      ftruncateSync(fd, goodLength);
      fsyncSync(fd);
      closeSync(fd);
    }
    const offset = this.offset();
    for (const e of entries) {
      if (e.index <= offset) continue;
      const keep = e.index - offset - 1;
      if (keep > this.entries.length) throw new StorageCorruptionError(`${name}: gap before entry ${e.index}`);
      this.entries.length = keep;
      this.entries.push(e);
    }
    this.records = records;
    if (this.hardState.commit > offset + this.entries.length) {
      throw new StorageCorruptionError(
        `${join(this.dir, 'hardstate.json')}: commit ${this.hardState.commit} is beyond the stored log (last index ${offset + this.entries.length})`,
      );
    }
    this.fd = openSync(name, 'a');
  }
}

function encodeRecord<T>(e: Entry<T>): Buffer {
  const payload = Buffer.from(JSON.stringify(e), 'utf8');
  const b = Buffer.allocUnsafe(HEADER + payload.length);
  b.writeUInt32LE(payload.length, 0);
  b.writeUInt32LE(crc32(payload), 4);
  payload.copy(b, HEADER);
  return b;
}

/** Parse records; stop at a torn tail; throw on damage followed by more data. */
export function decodeLog<T>(buf: Buffer, name: string): { entries: Entry<T>[]; goodLength: number; records: number } {
  const entries: Entry<T>[] = [];
  let off = 0;
  let records = 0;
  while (off < buf.length) {
    if (buf.length - off < HEADER) break; // torn header at the tail
    const len = buf.readUInt32LE(off);
    const sum = buf.readUInt32LE(off + 4);
    const end = off + HEADER + len;
    if (end > buf.length) break; // torn payload at the tail
    const payload = buf.subarray(off + HEADER, end);
    if (crc32(payload) !== sum) {
      if (end === buf.length) break; // the last record was torn mid-write
      throw new StorageCorruptionError(
        `${name}: checksum mismatch in the record at byte offset ${off} with ${buf.length - end} bytes of data after it; the log is corrupted in the middle, refusing to start (restore this peer from another one)`,
      );
    }
    let e: Entry<T>;
    try {
      e = JSON.parse(payload.toString('utf8')) as Entry<T>;
    } catch {
      throw new StorageCorruptionError(`${name}: undecodable record at byte offset ${off}`);
    }
    entries.push(e);
    records++;
    off = end;
  }
  return { entries, goodLength: off, records };
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replace dir/name atomically with `json` plus a checksum line. */
function writeAtomic(dir: string, name: string, json: string): void {
  const tmp = join(dir, `${name}.tmp`);
  const body = Buffer.from(`${crc32(Buffer.from(json, 'utf8'))}\n${json}`, 'utf8');
  const fd = openSync(tmp, 'w');
  try {
    writeAll(fd, body);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
  fsyncDir(dir);
}

function readChecked<V>(dir: string, name: string): V | null {
  const p = join(dir, name);
  if (!existsSync(p)) return null;
  const text = readFileSync(p, 'utf8');
  const nl = text.indexOf('\n');
  const json = nl >= 0 ? text.slice(nl + 1) : '';
  if (nl < 0 || String(crc32(Buffer.from(json, 'utf8'))) !== text.slice(0, nl)) {
    throw new StorageCorruptionError(`${p}: checksum mismatch; the file is corrupted, refusing to start`);
  }
  return JSON.parse(json) as V;
}
