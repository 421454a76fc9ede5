"""Round trips of the pure Engine.IO v4 codec (jsongle.engineio.packet)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jsongle.engineio import packet as eio
from jsongle.engineio.packet import Packet, PacketError

TEXT_TYPES = sorted(eio.TYPES)

text_packets = st.builds(Packet, st.sampled_from(TEXT_TYPES), st.text())
binary_packets = st.builds(Packet, st.just(eio.MESSAGE), st.binary())
# A polling payload part may not contain the record separator.
payload_text_packets = st.builds(
    Packet, st.sampled_from(TEXT_TYPES), st.text().filter(lambda s: eio.SEPARATOR not in s)
)


@pytest.mark.parametrize(
    "packet, frame",
    [
        (Packet(eio.OPEN, '{"sid":"x"}'), '0{"sid":"x"}'),
        (Packet(eio.CLOSE), "1"),
        (Packet(eio.PING), "2"),
        (Packet(eio.PING, "probe"), "2probe"),
        (Packet(eio.PONG, "probe"), "3probe"),
        (Packet(eio.MESSAGE, '2["jsongle",{}]'), '42["jsongle",{}]'),
        (Packet(eio.UPGRADE), "5"),
        (Packet(eio.NOOP), "6"),
        (Packet(eio.MESSAGE, b"\x00\x01\xff"), b"\x00\x01\xff"),
    ],
)
def test_known_frames(packet, frame):
    assert eio.encode(packet) == frame
    assert eio.decode(frame) == packet


@given(st.one_of(text_packets, binary_packets))
def test_frame_round_trip(packet):
    assert eio.decode(eio.encode(packet)) == packet


def test_payload_known_body():
    packets = [Packet(eio.MESSAGE, "hello"), Packet(eio.MESSAGE, b"\x01\x02\x03\x04"), Packet(eio.PING)]
    body = eio.encode_payload(packets)
    assert body == "4hello\x1ebAQIDBA==\x1e2"
    assert eio.decode_payload(body) == packets


@given(st.lists(st.one_of(payload_text_packets, binary_packets), min_size=1))
def test_payload_round_trip(packets):
    assert eio.decode_payload(eio.encode_payload(packets)) == packets


@pytest.mark.parametrize("frame", ["", "7", "x", "b", "\x1e", "9hello", " 4"])
def test_bad_frames(frame):
    with pytest.raises(PacketError):
        eio.decode(frame)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "4a\x1e",  # empty trailing part
        "\x1e4a",
        "7x",
        "b!!!!",  # not base64
        "bAQI",  # bad padding
        "b\u00e9A==",  # not ASCII
        "4ok\x1ebAQ=\x1e",
    ],
)
def test_bad_payloads(body):
    with pytest.raises(PacketError):
        eio.decode_payload(body)


def test_packet_error_is_a_value_error():
    # Callers that only know ValueError still catch it.
    assert issubclass(PacketError, ValueError)


@given(st.one_of(st.text(), st.binary()))
def test_decode_raises_only_packet_error(frame):
    try:
        result = eio.decode(frame)
    except PacketError:
        return
    assert result.type in eio.TYPES


@given(st.text())
def test_decode_payload_raises_only_packet_error(body):
    try:
        packets = eio.decode_payload(body)
    except PacketError:
        return
    assert packets and all(p.type in eio.TYPES for p in packets)


@given(st.lists(st.one_of(st.sampled_from(["4", "2", "3", "b", "bAA==", "6", ""]), st.text()), min_size=1))
def test_decode_payload_of_near_valid_parts(parts):
    try:
        eio.decode_payload(eio.SEPARATOR.join(parts))
    except PacketError:
        pass
