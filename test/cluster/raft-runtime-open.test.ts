// An online restart builds the successor's watchdog while the predecessor still runs the same
// Raft member on the same data_dir (src/takeover): the successor must read that storage only
// when it starts, after the predecessor released it. Read earlier, it missed the entries the
// predecessor went on persisting and acknowledging, and the leader's next heartbeat crashed it
// ("commit 7 beyond last index 5", seen in the rolling-restart test); worse, a member that
// forgets acknowledged entries can lose committed ones.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskStorage, type Entry } from '../../src/raft/index.js';
import { RaftRuntime, type StateMachine } from '../../src/cluster/raft-runtime.js';
import type { PeerTransport, TransportEvents } from '../../src/cluster/transport.js';
import { captureLogger } from './helpers.js';

class NoPeers extends EventEmitter<TransportEvents> implements PeerTransport {
  constructor(readonly self: string) {
    super();
  }
  send(): boolean {
    return true;
  }
  connected(): string[] {
    return [];
  }
  async close(): Promise<void> {}
}

const machine: StateMachine<number, null> = { apply: () => undefined, snapshot: () => null, restore: () => undefined };
const e = (index: number, term: number): Entry<number> => ({ index, term, data: index });

describe('raft runtime storage', () => {
  it('opens its storage at start, so it sees what a predecessor persisted after it was built', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgwd-raft-open-'));
    try {
      const predecessor = new DiskStorage<number, null>(dir);
      predecessor.save({ hardState: { term: 2, vote: 'b', commit: 3 }, entries: [e(1, 1), e(2, 2), e(3, 2)], snapshot: null });
      let opened = 0;
      const successor = new RaftRuntime<number, null>({
        self: 'a',
        peers: ['a', 'b', 'c'].map((name) => ({ name, priority: 0 })),
        tickMs: 100,
        electionTicks: 10,
        heartbeatTicks: 3,
        openStorage: () => {
          opened++;
          return new DiskStorage<number, null>(dir);
        },
        transport: new NoPeers('a'),
        machine,
        logger: captureLogger().logger,
      });
      // The predecessor serves on: a new leader's entries, acknowledged, then it stops.
      predecessor.save({ hardState: { term: 3, vote: 'c', commit: 5 }, entries: [e(4, 3), e(5, 3)], snapshot: null });
      predecessor.close();
      assert.equal(opened, 0, 'nothing read before start');
      successor.start();
      try {
        assert.equal(opened, 1);
        const st = successor.status();
        assert.equal(st.term, 3, 'the term the predecessor reached');
        assert.equal(successor.node.log.lastIndex(), 5, 'every entry the predecessor acknowledged');
      } finally {
        successor.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
