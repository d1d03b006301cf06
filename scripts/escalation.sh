#!/bin/sh
# Sample watchdog.vip.escalation_command: take the virtual IP on this peer.
#
#   escalation_command: "/path/to/escalation.sh %V %I other-peer-1 other-peer-2"
#
# A peer killed with -9 cannot give the address up, so this script first removes it from
# every other peer's host (as pgpool's sample does over ssh), then adds it here and
# announces it with gratuitous ARP so switches and clients learn the new owner at once.
# %V is the address with its prefix (10.0.0.100/24), %I the interface, both shell-quoted.
# REMOTE (environment) is the command prefix that runs a command on another peer's host,
# by default "ssh -o BatchMode=yes -o ConnectTimeout=3" (the host is appended). The user
# needs the right to change addresses: root, CAP_NET_ADMIN/CAP_NET_RAW (the systemd unit grants
# them to the peer, not to an ssh login on another host), or sudo. Environment: IP and ARPING
# are the commands run here (default `ip`, `arping`; e.g. IP="sudo -n /usr/sbin/ip" for a peer
# without the capabilities), REMOTE_IP the one run on the other hosts (default: $IP; under the
# systemd unit, REMOTE_IP="sudo -n /usr/sbin/ip"). docs/operations.md has the sudoers rules.
set -u

VIP="$1"
DEV="$2"
shift 2
ADDR="${VIP%/*}"
REMOTE="${REMOTE:-ssh -o BatchMode=yes -o ConnectTimeout=3}"
IP="${IP:-ip}"
ARPING="${ARPING:-arping}"
REMOTE_IP="${REMOTE_IP:-$IP}"

for host in "$@"; do
  # Failing to reach a peer is fine: a host that cannot be reached cannot answer ARP either.
  $REMOTE "$host" $REMOTE_IP addr del "$VIP" dev "$DEV" >/dev/null 2>&1 || true
done

if ! $IP addr add "$VIP" dev "$DEV" 2>/tmp/pgwatchdog-escalation.$$; then
  # Already here (a retry) is success; anything else is not.
  if ! ip -o addr show dev "$DEV" | grep -q " $ADDR/"; then
    cat /tmp/pgwatchdog-escalation.$$ >&2
    rm -f /tmp/pgwatchdog-escalation.$$
    exit 1
  fi
fi
rm -f /tmp/pgwatchdog-escalation.$$

# Gratuitous ARP (iputils arping); best effort, in the background so escalation is not delayed.
if command -v arping >/dev/null 2>&1; then
  ($ARPING -U -c 3 -I "$DEV" "$ADDR" >/dev/null 2>&1 &)
fi
echo "escalation.sh: $VIP on $DEV"
exit 0
