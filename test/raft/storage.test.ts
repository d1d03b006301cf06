// Durable storage: round trip, torn tail, corrupted middle, atomic files, compaction,
// and a real RaftNode restarted from disk.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, appendFileSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskStorage, StorageCorruptionError } from '../../src/raft/storage/disk-storage.js';
import { MemoryStorage } from '../../src/raft/storage/memory-storage.js';
import { RaftNode } from '../../src/raft/core/raft.js';
import type { Entry, Snapshot } from '../../src/raft/core/types.js';

type Cmd = { op: string; n: number };
const e = (index: number, term: number, n = index): Entry<Cmd> => ({ index, term, data: { op: 'set', n } });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'raft-storage-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function liveLog(): string {
  const f = readdirSync(dir).find((n) => /^log\.\d+$/.test(n));
  assert.ok(f, 'no log file');
  return join(dir, f);
}

describe('raft disk storage', () => {
  it('round-trips hard state and entries, and replaces a conflicting suffix', () => {
    const s = new DiskStorage<Cmd, string>(dir);
    s.save({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: [e(1, 1), e(2, 1), e(3, 1)], snapshot: null });
    s.save({ hardState: { term: 2, vote: 'b', commit: 2 }, entries: [e(3, 2, 33), e(4, 2)], snapshot: null });
    s.close();
    const r = new DiskStorage<Cmd, string>(dir).load();
    assert.deepEqual(r.hardState, { term: 2, vote: 'b', commit: 2 });
    assert.deepEqual(r.entries, [e(1, 1), e(2, 1), e(3, 2, 33), e(4, 2)]);
    assert.equal(r.snapshot, null);
  });

  it('truncates a torn tail and keeps everything before it', () => {
    const s = new DiskStorage<Cmd, string>(dir);
    s.save({ hardState: { term: 1, vote: null, commit: 1 }, entries: [e(1, 1), e(2, 1)], snapshot: null });
    s.close();
    const name = liveLog();
    const good = statSync(name).size;
    appendFileSync(name, Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5])); // header promises 200 bytes, 1 arrives
    const r = new DiskStorage<Cmd, string>(dir).load();
    assert.deepEqual(r.entries, [e(1, 1), e(2, 1)]);
    assert.equal(statSync(name).size, good, 'torn tail not truncated');
  });

  it('treats a last record with a bad checksum as torn', () => {
    const s = new DiskStorage<Cmd, string>(dir);
    s.save({ hardState: { term: 1, vote: null, commit: 1 }, entries: [e(1, 1), e(2, 1)], snapshot: null });
    s.close();
    const name = liveLog();
    const b = readFileSync(name);
    b[b.length - 2] ^= 0xff;
    writeFileSync(name, b);
    const r = new DiskStorage<Cmd, string>(dir).load();
    assert.deepEqual(r.entries, [e(1, 1)]);
  });

  it('recovers a prefix whatever byte a write was torn at', () => {
    const s = new DiskStorage<Cmd, string>(dir);
    s.save({ hardState: { term: 1, vote: null, commit: 2 }, entries: [e(1, 1), e(2, 1)], snapshot: null });
    s.save({ hardState: null, entries: [e(3, 1), e(4, 1)], snapshot: null });
    s.close();
    const name = liveLog();
    const full = readFileSync(name);
    const sizes: number[] = [];
    for (let cut = full.length; cut >= 0; cut--) {
      writeFileSync(name, full.subarray(0, cut));
      let got: Entry<Cmd>[];
      try {
        const ds = new DiskStorage<Cmd, string>(dir);
        got = ds.load().entries;
        ds.close();
      } catch (err) {
        // commit 2 needs entries 1..2: cutting into them must be refused, not silently accepted
        assert.ok(err instanceof StorageCorruptionError && /beyond the stored log/.test(err.message), String(err));
        sizes.push(-1);
        continue;
      }
      assert.deepEqual(got, [e(1, 1), e(2, 1), e(3, 1), e(4, 1)].slice(0, got.length), `cut at ${cut}`);
      assert.ok(got.length >= 2);
      sizes.push(got.length);
    }
    assert.ok(sizes.includes(4) && sizes.includes(3) && sizes.includes(2) && sizes.includes(-1));
  });

  it('refuses a log corrupted in the middle, naming file and offset', () => {
    const s = new DiskStorage<Cmd, string>(dir);
    s.save({ hardState: { term: 1, vote: null, commit: 0 }, entries: [e(1, 1), e(2, 1), e(3, 1)], snapshot: null });
    s.close();
    const name = liveLog();
    const b = readFileSync(name);
    b[12] ^= 0x55; // inside the first record's payload
    writeFileSync(name, b);
    assert.throws(
      () => new DiskStorage<Cmd, string>(dir),
      (err: unknown) => err instanceof StorageCorruptionError && err.message.includes(name) && /offset 0\b/.test(err.message) && /corrupted/.test(err.message),
    );
  });

  it('refuses a corrupted hard state file', () => {
    const s = new DiskStorage<Cmd, string>(dir);
    s.save({ hardState: { term: 7, vote: 'x', commit: 0 }, entries: [], snapshot: null });
    s.close();
    const p = join(dir, 'hardstate.json');
    writeFileSync(p, readFileSync(p, 'utf8').replace('"term":7', '"term":9'));
    assert.throws(() => new DiskStorage<Cmd, string>(dir), StorageCorruptionError);
  });

  it('compacts to a snapshot and installs a received snapshot, atomically', () => {
    const s = new DiskStorage<Cmd, string>(dir);
    s.save({ hardState: { term: 1, vote: null, commit: 3 }, entries: [e(1, 1), e(2, 1), e(3, 1), e(4, 1)], snapshot: null });
    const snap: Snapshot<string> = { meta: { index: 2, term: 1, peers: ['a', 'b', 'c'] }, data: 'state@2' };
    s.compact(snap);
    s.close();
    let r = new DiskStorage<Cmd, string>(dir).load();
    assert.deepEqual(r.snapshot, snap);
    assert.deepEqual(r.entries, [e(3, 1), e(4, 1)]);
    assert.equal(readdirSync(dir).filter((n) => n.startsWith('log.')).length, 1, 'old log generation left behind');
    const s2 = new DiskStorage<Cmd, string>(dir);
    const recv: Snapshot<string> = { meta: { index: 10, term: 3, peers: ['a', 'b', 'c'] }, data: 'state@10' };
    s2.save({ hardState: { term: 3, vote: null, commit: 10 }, entries: [e(11, 3)], snapshot: recv });
    s2.close();
    r = new DiskStorage<Cmd, string>(dir).load();
    assert.deepEqual(r.snapshot, recv);
    assert.deepEqual(r.entries, [e(11, 3)]);
    assert.deepEqual(r.hardState, { term: 3, vote: null, commit: 10 });
  });

  it('ignores leftovers of an interrupted rewrite', () => {
    const s = new DiskStorage<Cmd, string>(dir);
    s.save({ hardState: { term: 1, vote: null, commit: 1 }, entries: [e(1, 1), e(2, 1)], snapshot: null });
    s.close();
    writeFileSync(join(dir, 'log.99'), 'garbage');
    writeFileSync(join(dir, 'snapshot.json.tmp'), 'garbage');
    const r = new DiskStorage<Cmd, string>(dir).load();
    assert.deepEqual(r.entries, [e(1, 1), e(2, 1)]);
    assert.ok(!readdirSync(dir).includes('log.99'));
  });

  it('restarts a single-node RaftNode from disk with its term, vote, log and commit', () => {
    const cfg = { id: 'a', peers: ['a'], electionTicks: 10, heartbeatTicks: 1, random: () => 0.5 };
    let s = new DiskStorage<Cmd, string>(dir);
    let r = new RaftNode<Cmd, string>(cfg, s.load());
    const drain = (): Entry<Cmd>[] => {
      const applied: Entry<Cmd>[] = [];
      while (r.hasReady()) {
        const rd = r.ready();
        s.save(rd);
        applied.push(...rd.committedEntries);
        r.advance(rd);
      }
      return applied;
    };
    r.campaign();
    drain();
    assert.equal(r.role, 'leader');
    r.propose({ op: 'set', n: 1 });
    r.propose({ op: 'set', n: 2 });
    const first = drain().filter((x) => x.data !== null);
    assert.equal(first.length, 2);
    const term = r.term;
    s.close();
    s = new DiskStorage<Cmd, string>(dir);
    r = new RaftNode<Cmd, string>(cfg, s.load());
    assert.equal(r.term, term);
    assert.equal(r.vote, 'a');
    const replay = drain().filter((x) => x.data !== null);
    assert.deepEqual(replay, first, 'committed entries are replayed to rebuild the state machine');
    s.close();
  });
});

describe('raft memory storage', () => {
  it('refuses entries that leave a gap', () => {
    const s = new MemoryStorage<Cmd, string>();
    s.save({ hardState: null, entries: [e(1, 1)], snapshot: null });
    assert.throws(() => s.save({ hardState: null, entries: [e(3, 1)], snapshot: null }));
  });
});
