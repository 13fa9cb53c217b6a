"""Network conditions for endpoint devices: named profiles and the methods that make them.

A profile is per-direction delay, jitter, rate and loss (plus stalls and resets, the faults a mobile
client must survive). The methods that make one (chosen by :mod:`.shaping`; ``auto`` is ``netns`` where this
process may make a namespace, else ``tcp-proxy``, and every result records which ran):

- ``tcp-proxy`` (works everywhere, as Shopify's toxiproxy does it): an asyncio TCP proxy on loopback
  between client and server (:mod:`harness.devices.endpoint.proxy`). Per direction it delays each chunk
  by ``delay_ms`` +/- ``jitter_ms`` (uniform; never reordering the byte stream), paces bytes at ``rate_kbit``,
  and injects stalls and connection resets. **Packet loss cannot be made at TCP level**: a lost segment
  is modelled as the retransmission delay it causes (per chunk, probability ``1 - (1 - loss)^segments``,
  one retransmission timeout ``max(200 ms, RTT)``: Linux's ``TCP_RTO_MIN`` is 200 ms).
- ``netns`` (:mod:`.netns`): the client runs in a network namespace behind a veth pair; ``tc tbf`` makes each
  direction's rate, ``tc netem`` delay/jitter/loss where the kernel has ``sch_netem`` (else the proxy does,
  listening on the veth's host end). Needs CAP_NET_ADMIN and iproute2.
- ``netem``: ``netns`` that must have ``sch_netem``; :func:`.netns.netem_problem` says why not. A method that cannot
  run skips the case with the reason, never runs it on an unshaped network.

Profile numbers (RTT split evenly over the two directions; ``down`` = server to client):

==========  =======  ===========  ============  ==========  ========================================
profile     RTT ms   jitter ms    down/up kbit  loss        source
==========  =======  ===========  ============  ==========  ========================================
direct      0        0            unlimited     0           no shaping (pass-through proxy)
wifi        20       5            30000/15000   0           ours: a good home/office Wi-Fi link
4g          170      10           9000/9000     0           WebPageTest connectivity "4G" (jitter ours)
lossy-4g    170      30           9000/9000     2 %         WebPageTest "4G" + 2 % loss, 30 ms jitter (ours)
3g          300      20           1600/768      0           WebPageTest connectivity "3G" (jitter ours)
edge        840      40           240/200       0           WebPageTest connectivity "Edge" (jitter ours)
==========  =======  ===========  ============  ==========  ========================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: Linux's minimum retransmission timeout (include/net/tcp.h TCP_RTO_MIN = HZ/5).
RTO_MIN_MS = 200.0
#: Segment size used to turn a chunk into segments for the loss model (Ethernet MSS with timestamps).
MSS_BYTES = 1448
METHODS = ("auto", "netns", "netem", "tcp-proxy")
PROFILE_KEYS = ("delay_ms", "jitter_ms", "rate_kbit", "up_rate_kbit", "loss_pct", "stall_pct", "stall_ms",
                "reset_pct", "method")


@dataclass(frozen=True)
class NetworkProfile:
    """One network condition. ``delay_ms``/``jitter_ms`` are per direction (half the RTT); rates in kbit/s
    (``rate_kbit`` down, ``up_rate_kbit`` up; 0 = unlimited); ``loss_pct`` per segment; ``stall_pct``: chance
    per response chunk that the link stalls ``stall_ms``; ``reset_pct``: chance per request that its connection
    is reset."""

    name: str
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbit: float = 0.0
    up_rate_kbit: float = 0.0
    loss_pct: float = 0.0
    stall_pct: float = 0.0
    stall_ms: float = 0.0
    reset_pct: float = 0.0
    method: str = "auto"
    source: str = "user-defined"

    @property
    def rtt_ms(self) -> float:
        return 2 * self.delay_ms

    def retransmit_delay_ms(self) -> float:
        """What one lost segment costs in this model: one RTO, at least Linux's ``TCP_RTO_MIN``."""
        return max(RTO_MIN_MS, self.rtt_ms)

    def loss_chance(self, nbytes: int) -> float:
        """Chance that a chunk of ``nbytes`` loses at least one segment."""
        if self.loss_pct <= 0 or nbytes <= 0:
            return 0.0
        segments = math.ceil(nbytes / MSS_BYTES)
        return 1.0 - (1.0 - self.loss_pct / 100.0) ** segments

    def record(self) -> dict[str, Any]:
        """The profile as a result records it."""
        return asdict(self)

    def describe(self) -> str:
        """One line for a method text: what this profile does."""
        def rate(k: float) -> str:
            return "unlimited" if k <= 0 else f"{k:g} kbit/s"
        parts = [f"{self.delay_ms:g} ms +/- {self.jitter_ms:g} ms per direction",
                 f"down {rate(self.rate_kbit)}, up {rate(self.up_rate_kbit or self.rate_kbit)}"]
        if self.loss_pct:
            parts.append(f"{self.loss_pct:g}% loss as retransmission delay ({self.retransmit_delay_ms():g} ms)")
        if self.stall_pct:
            parts.append(f"{self.stall_pct:g}% chunks stall {self.stall_ms:g} ms")
        if self.reset_pct:
            parts.append(f"{self.reset_pct:g}% requests reset")
        return "; ".join(parts)


_WPT = "WebPageTest connectivity profile"
PROFILES: dict[str, NetworkProfile] = {p.name: p for p in (
    NetworkProfile("direct", source="no shaping: the pass-through proxy only"),
    NetworkProfile("wifi", 10, 2.5, 30000, 15000, source="ours: a good Wi-Fi link (20 ms RTT, 5 ms jitter)"),
    NetworkProfile("4g", 85, 5, 9000, 9000, source=f"{_WPT} '4G' (170 ms RTT, 9/9 Mbit/s); jitter ours"),
    NetworkProfile("lossy-4g", 85, 15, 9000, 9000, loss_pct=2.0,
                   source=f"{_WPT} '4G' with 2% loss and 30 ms jitter (ours)"),
    NetworkProfile("3g", 150, 10, 1600, 768, source=f"{_WPT} '3G' (300 ms RTT, 1.6/0.768 Mbit/s); jitter ours"),
    NetworkProfile("edge", 420, 20, 240, 200, source=f"{_WPT} 'Edge' (840 ms RTT, 240/200 kbit/s); jitter ours"),
)}


@dataclass(frozen=True)
class ClientPolicy:
    """What the mobile client does: a per-request timeout, retries with exponential backoff, a response cache."""

    timeout_s: float = 10.0
    retries: int = 2
    backoff_ms: float = 50.0
    cache: bool = False

    def backoff_s(self, attempt: int) -> float:
        """Wait before retry ``attempt`` (1-based): ``backoff_ms * 2**(attempt-1)``."""
        return self.backoff_ms * (2 ** (attempt - 1)) / 1000.0


@dataclass(frozen=True)
class NetworkSettings:
    """``[suite.network]``: the profiles endpoint cases run under and the client's policy."""

    profiles: tuple[str, ...] = ()
    custom: Mapping[str, NetworkProfile] = field(default_factory=dict)
    client: ClientPolicy = field(default_factory=ClientPolicy)
    #: ``[suite.network] method``: the method of every built-in profile and of the suite's own that name none.
    method: str = "auto"

    def profile(self, name: str) -> NetworkProfile:
        """The profile called ``name`` (the suite's own first); KeyError when unknown."""
        return self.custom.get(name) or replace(PROFILES[name], method=self.method)


def custom_profile(name: str, table: Mapping[str, Any]) -> NetworkProfile:
    """A user-defined profile from a suite table (keys checked by the suite loader: :data:`PROFILE_KEYS`)."""
    base = NetworkProfile(name)
    values = {k: (str(v) if k == "method" else float(v)) for k, v in table.items()}
    return replace(base, **values)
