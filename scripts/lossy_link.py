#!/usr/bin/env python3
"""A lossy Ethernet link between QEMU and a TAP device, for scripts/qemu-e2e.sh.

QEMU's NIC is attached with `-netdev socket,udp=127.0.0.1:QEMU_PEER_PORT,localaddr=127.0.0.1:LISTEN_PORT`
(one Ethernet frame per UDP datagram); this relay moves frames between that UDP socket and the TAP
device, dropping each frame, in either direction, with probability LOSS. Run it inside the test's
network namespace (the TAP device must exist and be up). Prints how many frames it passed and
dropped when it gets SIGTERM.

Usage: lossy_link.py TAP LISTEN_PORT QEMU_PEER_PORT LOSS SEED
"""
import fcntl
import os
import random
import select
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def main():
    tap_name, listen_port, peer_port, loss, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    tap = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tap, TUNSETIFF, struct.pack("16sH", tap_name.encode(), IFF_TAP | IFF_NO_PI))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", listen_port))
    peer = ("127.0.0.1", peer_port)
    counts = {"to_guest": [0, 0], "from_guest": [0, 0]}  # [passed, dropped]

    def report(*_):
        print("lossy-link: to the guest %d passed, %d dropped; from the guest %d passed, %d dropped"
              % (*counts["to_guest"], *counts["from_guest"]), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, report)
    print("lossy-link: %s <-> udp %d/%d, loss %.0f%% each way" % (tap_name, listen_port, peer_port, loss * 100),
          flush=True)
    while True:
        ready, _, _ = select.select([tap, udp], [], [])
        if tap in ready:
            frame = os.read(tap, 2048)
            if rng.random() < loss:
                counts["to_guest"][1] += 1
            else:
                counts["to_guest"][0] += 1
                udp.sendto(frame, peer)
        if udp in ready:
            frame, _ = udp.recvfrom(2048)
            if rng.random() < loss:
                counts["from_guest"][1] += 1
            else:
                counts["from_guest"][0] += 1
                os.write(tap, frame)


if __name__ == "__main__":
    main()
