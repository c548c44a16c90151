"""The STARTTLS dialogues against scripted peers, sans-IO: bytes in, bytes out.

Each script (starttls_peers.py) is played three ways (h11's habit): every
reply fed whole, one byte at a time, and with trailing data behind the
go-ahead, which must fail (a STARTTLS injection). Then the failure replies,
the limits, the table of protocols and ports; Hypothesis checks that any
bytes give bytes or ProtocolError and that any split of the replies gives
the same conversation. The socket pump is in test_starttls_pump.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starttls_peers import (
    FAILURES,
    LIMITS,
    SCRIPTS,
    SERVER,
    Script,
    new,
    script,
)

from certhook.errors import ProtocolError, UsageError
from certhook.probe.starttls import (
    DEFAULT_PORTS,
    IMPLICIT_TLS_PORTS,
    PROTOCOLS,
    Dialogue,
    dialogue,
    protocol_for_port,
)


def play(script: Script, chunks: str = "whole", trailing: bytes = b"") -> Dialogue:
    """Play ``script``; ``chunks`` is "whole" or "bytes"; ``trailing`` follows the last reply."""
    talk = new(script.protocol)
    sent = talk.initial()
    for number, (expected, reply) in enumerate(script.steps):
        assert sent == expected
        assert not talk.done
        if number == len(script.steps) - 1:
            reply += trailing
        if chunks == "whole":
            sent = talk.feed(reply)
        else:
            outputs = [talk.feed(reply[i : i + 1]) for i in range(len(reply))]
            # Nothing may be answered before the reply is complete.
            assert not any(outputs[:-1])
            sent = outputs[-1]
    assert sent == script.last
    assert talk.done
    return talk


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_script_fed_whole(script: Script) -> None:
    play(script)


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_script_fed_one_byte_at_a_time(script: Script) -> None:
    play(script, chunks="bytes")


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_data_behind_the_go_ahead_is_injection(script: Script) -> None:
    with pytest.raises(ProtocolError, match="after the go-ahead"):
        play(script, trailing=b"250 injected\r\n")


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_data_after_done_is_refused_and_the_dialogue_stays_dead(script: Script) -> None:
    talk = play(script)
    with pytest.raises(ProtocolError, match="after the go-ahead"):
        talk.feed(b"x")
    with pytest.raises(ProtocolError):
        talk.feed(b"")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_any_split_of_the_replies_gives_the_same_dialogue(
    script: Script, data: st.DataObject
) -> None:
    talk = new(script.protocol)
    sent = talk.initial()
    for expected, reply in script.steps:
        assert sent == expected
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(reply) - 1)), max_size=6)))
        pieces = [reply[a:b] for a, b in zip([0, *cuts], [*cuts, len(reply)])]
        sent = b"".join(talk.feed(piece) for piece in pieces)
    assert sent == script.last
    assert talk.done


# --- failure replies ----------------------------------------------------------


def fail_at(name: str, step: int, reply: bytes) -> ProtocolError:
    """Play script ``name`` up to ``step``, then answer ``reply``: it must fail."""
    played = script(name)
    talk = new(played.protocol)
    sent = talk.initial()
    for expected, good in played.steps[:step]:
        assert sent == expected
        sent = talk.feed(good)
    assert sent == played.steps[step][0]
    with pytest.raises(ProtocolError) as caught:
        talk.feed(reply)
    assert caught.value.source is None  # the pump adds host:port
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize(("name", "step", "reply", "message"), FAILURES)
def test_failure_reply(name: str, step: int, reply: bytes, message: str) -> None:
    error = fail_at(name, step, reply)
    assert str(error).startswith(message)


# Data that came with a reply, before our command went out, is told apart by
# arriving in the same chunk: byte by byte it is not the same conversation.
SAME_CHUNK = [row for row in FAILURES if "before our command" in row[3]]


@pytest.mark.parametrize(
    ("name", "step", "reply", "message"), [row for row in FAILURES if row not in SAME_CHUNK]
)
def test_failure_reply_one_byte_at_a_time(name: str, step: int, reply: bytes, message: str) -> None:
    played = script(name)
    talk = new(played.protocol)
    talk.initial()
    for _, good in played.steps[:step]:
        talk.feed(good)
    with pytest.raises(ProtocolError) as caught:
        for i in range(len(reply)):
            talk.feed(reply[i : i + 1])
    assert str(caught.value).startswith(message)


# --- limits ------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "data", "message"), LIMITS)
def test_limits(protocol: str, data: bytes, message: str) -> None:
    talk = new(protocol)
    talk.initial()
    with pytest.raises(ProtocolError, match=f"^{protocol}: .*{message}"):
        for i in range(0, len(data), 1000):
            talk.feed(data[i : i + 1000])


def test_pop3_capa_listing_is_bounded() -> None:
    talk = new("pop3")
    assert talk.feed(b"+OK\r\n") == b"CAPA\r\n"
    with pytest.raises(ProtocolError, match="reply of more than 512 lines"):
        talk.feed(b"+OK\r\n" + b"X\r\n" * 600)


def test_line_limit_counts_before_the_terminator_arrives() -> None:
    talk = new("smtp")
    talk.feed(b"2" * 4095)  # one short of the limit: still waiting
    with pytest.raises(ProtocolError, match="line longer"):
        talk.feed(b"2")


# --- Hypothesis: any bytes give bytes or ProtocolError ---------------------------


def _feed_all(talk: Dialogue, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            out = talk.feed(chunk)
        except ProtocolError:
            return
        assert isinstance(out, bytes)


@settings(max_examples=150, deadline=None)
@given(
    protocol=st.sampled_from(sorted(PROTOCOLS)),
    chunks=st.lists(st.binary(max_size=300), max_size=8),
)
def test_any_bytes_give_bytes_or_protocol_error(protocol: str, chunks: list[bytes]) -> None:
    talk = new(protocol)
    talk.initial()
    _feed_all(talk, chunks)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), chunks=st.lists(st.binary(max_size=200), max_size=6))
@pytest.mark.parametrize("played", SCRIPTS, ids=str)
def test_any_bytes_after_a_valid_start_give_bytes_or_protocol_error(
    played: Script, data: st.DataObject, chunks: list[bytes]
) -> None:
    talk = new(played.protocol)
    talk.initial()
    steps = data.draw(st.integers(0, len(played.steps) - 1))
    for _, reply in played.steps[:steps]:
        talk.feed(reply)
    # Mutated replies reach deeper than random bytes: splice script bytes in.
    last = played.steps[steps][1]
    cut = data.draw(st.integers(0, len(last)))
    _feed_all(talk, [last[:cut], *chunks, last[cut:]])


# --- the table, the ports, the names ---------------------------------------------


def test_default_ports() -> None:
    assert dict(DEFAULT_PORTS) == {
        "smtp": 25, "submission": 587, "lmtp": 24, "ldap": 389, "imap": 143, "pop3": 110,
        "ftp": 21, "xmpp": 5222, "xmpp-server": 5269, "postgres": 5432, "mysql": 3306,
        "sieve": 4190, "nntp": 119,
    }


@pytest.mark.parametrize(("port", "protocol"), [
    *[(port, name) for name, port in DEFAULT_PORTS.items()],
    (443, "tls"), (465, "tls"), (636, "tls"), (993, "tls"), (995, "tls"), (5061, "tls"),
    (8443, "tls"), (990, "tls"), (853, "tls"), (5223, "tls"), (563, "tls"), (6697, "tls"),
    (3269, "tls"), (12345, "tls"), (0, "tls"),
])
def test_protocol_for_port(port: int, protocol: str) -> None:
    assert protocol_for_port(port) == protocol


def test_implicit_tls_ports_are_not_starttls_ports() -> None:
    named = {443, 465, 636, 993, 995, 5061, 8443, 990, 853, 5223, 563, 6697, 3269}
    assert named <= IMPLICIT_TLS_PORTS
    assert not IMPLICIT_TLS_PORTS & set(DEFAULT_PORTS.values())


@pytest.mark.parametrize("protocol", sorted(DEFAULT_PORTS))
def test_table_row_says_who_speaks_first(protocol: str) -> None:
    row = PROTOCOLS[protocol]
    assert row.port == DEFAULT_PORTS[protocol]
    assert bool(new(protocol).initial()) == row.client_first
    assert row.reference


def test_tls_needs_no_dialogue() -> None:
    talk = dialogue("tls", SERVER)
    assert talk.done and talk.initial() == b""
    with pytest.raises(ProtocolError):
        talk.feed(b"220 hello\r\n")


@pytest.mark.parametrize("protocol", ["smtps", "", "SMTP", "http"])
def test_unknown_protocol_is_a_usage_error(protocol: str) -> None:
    with pytest.raises(UsageError, match="unknown STARTTLS protocol"):
        dialogue(protocol, SERVER)


@pytest.mark.parametrize("name", ["", "mail example", "mail\r\nRCPT TO:<x>", "a\x00b", "\udcff"])
def test_names_that_cannot_go_on_the_wire(name: str) -> None:
    with pytest.raises(UsageError):
        dialogue("smtp", name)
    with pytest.raises(UsageError):
        dialogue("smtp", SERVER, client_name=name)


def test_idn_server_name_goes_out_as_a_label_and_quotes_are_escaped() -> None:
    assert b" to='xn--bcher-kva.example' " in dialogue("xmpp", "b\u00fccher.example").initial()
    assert b" to='a&apos;b&amp;c' " in dialogue("xmpp", "a'b&c").initial()


def test_default_client_name_is_an_address_literal() -> None:
    talk = dialogue("smtp", SERVER)
    assert talk.feed(b"220 hi\r\n") == b"EHLO [127.0.0.1]\r\n"
