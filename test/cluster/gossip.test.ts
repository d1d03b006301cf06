// Gossip freshness by link liveness: a view is current while the link it came over is up (every
// change goes out at once), it ages from the moment that link goes down, it goes stale after
// `staleAfterMs` even on a live link, and the periodic resend is only a slow refresh.
import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { BackendRegistry } from '../../src/backends/registry.js';
import { Gossip } from '../../src/cluster/gossip.js';
import type { PeerTransport, TransportEvents } from '../../src/cluster/transport.js';
import type { PeerStatus, PeerView } from '../../src/cluster/view.js';
import { WIRE_VERSION, type Envelope } from '../../src/cluster/wire.js';
import { captureLogger } from './helpers.js';

/** A transport whose links and incoming messages the test drives; what is sent is kept. */
class Links extends EventEmitter<TransportEvents> implements PeerTransport {
  readonly sent: { to: string; env: Envelope }[] = [];
  readonly self = 'a';
  send(to: string, env: Envelope): boolean {
    this.sent.push({ to, env });
    return true;
  }
  connected(): string[] {
    return [];
  }
  async close(): Promise<void> {}
}

const status = (over: Partial<PeerStatus> = {}): PeerStatus => ({ proxyUp: true, sessions: 0, version: 't', priority: 0, state: 'STANDBY', ...over });

function viewOf(peer: string, seq: number): Envelope {
  const body: PeerView = { peer, seq, startedAt: 1, backends: [{ id: 0, health: 'up', role: 'primary', lsn: null, since: 1 }], status: status() };
  return { v: WIRE_VERSION, kind: 'view', from: peer, body };
}

function setup(st: () => PeerStatus = () => status()) {
  const transport = new Links();
  const registry = new BackendRegistry({ backends: [{ host: '127.0.0.1', port: 1, weight: 1, data_dir: '', priority: 0, failover: 'allow', name: undefined }] } as never);
  const g = new Gossip({ self: 'a', peers: ['a', 'b', 'c'], registry, transport, status: st, refreshMs: 10_000, staleAfterMs: 30_000, logger: captureLogger().logger });
  return { transport, registry, g };
}

describe('gossip freshness', () => {
  it('counts a view as current while its link is up, ages it from the link going down, and stales it after staleAfterMs', () => {
    mock.timers.enable({ apis: ['Date', 'setInterval', 'setImmediate'], now: 1_000_000 });
    try {
      const { transport, g } = setup();
      g.start();
      transport.emit('up', 'b');
      transport.emit('message', viewOf('b', 1));
      mock.timers.tick(20_000);
      assert.equal(g.views().get('b')!.ageMs, 0, 'a view over a live link is current, however long ago it came');
      transport.emit('down', 'b');
      mock.timers.tick(1500);
      assert.equal(g.views().get('b')!.ageMs, 1500, 'it ages from the moment its link went down');
      transport.emit('up', 'b');
      mock.timers.tick(500);
      assert.equal(g.views().get('b')!.ageMs, 2000, 'a view from an earlier link keeps aging until the peer sends one on the new link');
      transport.emit('message', viewOf('b', 2));
      assert.equal(g.views().get('b')!.ageMs, 0);
      mock.timers.tick(30_001);
      assert.equal(g.views().get('b')!.ageMs, 30_001, 'a live link with no view for staleAfterMs: the view counts for nothing');
      g.stop();
    } finally {
      mock.timers.reset();
    }
  });

  it('resends only every refreshMs, sends a changed status at once, and a new session count only with the refresh', () => {
    mock.timers.enable({ apis: ['Date', 'setInterval', 'setImmediate'], now: 1_000_000 });
    try {
      let st = status();
      const { transport, registry, g } = setup(() => st);
      g.start();
      const views = () => transport.sent.filter((s) => s.env.kind === 'view').length;
      const start = views();
      assert.equal(start, 2, 'the first view goes to both peers at once');
      mock.timers.tick(9_999);
      assert.equal(views(), start, 'nothing is resent before the refresh');
      mock.timers.tick(1);
      assert.equal(views(), start + 2, 'the refresh');
      st = { ...st, sessions: 5 };
      g.sendIfChanged();
      mock.timers.tick(0);
      assert.equal(views(), start + 2, 'a session count is no news');
      st = { ...st, state: 'NETWORK ISOLATION' };
      g.sendIfChanged();
      mock.timers.tick(0);
      assert.equal(views(), start + 4, 'a new state goes out at once');
      g.sendIfChanged();
      mock.timers.tick(0);
      assert.equal(views(), start + 4, 'and once');
      registry.update(0, { pgStatus: 'down' }, 'test');
      mock.timers.tick(0);
      assert.equal(views(), start + 6, 'a health change goes out at once');
      g.stop();
    } finally {
      mock.timers.reset();
    }
  });
});
