#!/bin/sh
# Sample watchdog.vip.de_escalation_command: give the virtual IP up on this peer.
#
#   de_escalation_command: "/path/to/de_escalation.sh %V %I"
#
# Succeeds when the address is gone afterwards, including when it was not here at all
# (a starting peer runs this to drop an address left from before a crash).
# IP="sudo -n /usr/sbin/ip" (environment) runs `ip` through sudo (see escalation.sh).
set -u

VIP="$1"
DEV="$2"
ADDR="${VIP%/*}"
IP="${IP:-ip}"

$IP addr del "$VIP" dev "$DEV" >/dev/null 2>&1 || true
if ip -o addr show dev "$DEV" 2>/dev/null | grep -q " $ADDR/"; then
  echo "de_escalation.sh: $VIP is still on $DEV" >&2
  exit 1
fi
echo "de_escalation.sh: $VIP not on $DEV"
exit 0
