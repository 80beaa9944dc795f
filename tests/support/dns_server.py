"""A real DNS server on loopback for the tests: UDP, answering from a table of TXT records.

dnspython parses each query and builds each response (the same library `hebdo check
--dns` resolves with, but through the real wire format over a real socket). Names
not in the table get NXDOMAIN; a name with records of another type gets NOERROR with
no answer, as an authoritative server would.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["DnsServer", "txt"]


def txt(value: str) -> str:
    """A TXT record's zone-file text, the value cut into strings of 255 bytes."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


class DnsServer:
    """Answers TXT queries from `records` ({name: [value, …]}), changeable while running."""

    host = "127.0.0.1"

    def __init__(self, records: dict[str, list[str]] | None = None) -> None:
        self.records: dict[str, list[str]] = dict(records or {})
        self.queries: list[tuple[str, str]] = []  # (name, type) in arrival order
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((self.host, 0))
        self.port: int = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopping = threading.Event()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._socket.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = self._socket.recvfrom(4096)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            try:
                self._socket.sendto(self._answer(query).to_wire(), peer)
            except OSError:  # closed by __exit__ while answering
                return

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
        known = {key.lower().rstrip("."): values for key, values in self.records.items()}
        if name not in known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and known[name]:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name,
                    300,
                    dns.rdataclass.IN,
                    dns.rdatatype.TXT,
                    [txt(value) for value in known[name]],
                )
            )
        return response
