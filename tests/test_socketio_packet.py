"""Round trips of the pure Socket.IO v5 codec (jsongle.socketio.packet)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jsongle.socketio import packet as sio
from jsongle.socketio.packet import Packet, PacketError, Reassembler

namespaces = st.one_of(
    st.just("/"),
    st.from_regex(r"/[a-z0-9_\-]{1,12}", fullmatch=True),
)
ack_ids = st.one_of(st.none(), st.integers(min_value=0, max_value=10**15 - 1))
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**53), max_value=2**53), st.text(),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
# Values that may hold bytes anywhere (binary attachments).
binary_values = st.recursive(
    st.one_of(json_scalars, st.binary()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
event_names = st.text(min_size=1, max_size=12)


def feed_all(messages, reassembler=None):
    """Feed every Engine.IO message; return the packets that completed."""
    reassembler = reassembler or Reassembler()
    done = []
    for message in messages:
        packet = reassembler.feed(message)
        if packet is not None:
            done.append(packet)
    return done


# -- known wire forms ------------------------------------------------------


@pytest.mark.parametrize(
    "packet, wire",
    [
        (Packet(sio.CONNECT), "0"),
        (Packet(sio.CONNECT, "/", {"appToken": "t"}), '0{"appToken":"t"}'),
        (Packet(sio.CONNECT, "/admin", {"sid": "abc"}), '0/admin,{"sid":"abc"}'),
        (Packet(sio.DISCONNECT, "/admin"), "1/admin,"),
        (Packet(sio.EVENT, "/", ["jsongle", {"a": 1}]), '2["jsongle",{"a":1}]'),
        (Packet(sio.EVENT, "/", ["hello"], 12), '212["hello"]'),
        (Packet(sio.EVENT, "/chat", ["hello", "é"], 3), '2/chat,3["hello","é"]'),
        (Packet(sio.ACK, "/", [], 0), "30[]"),
        (Packet(sio.ACK, "/x", ["ok", 1], 7), '3/x,7["ok",1]'),
        (Packet(sio.CONNECT_ERROR, "/", {"message": "invalid appToken"}), '4{"message":"invalid appToken"}'),
    ],
)
def test_known_packets(packet, wire):
    assert sio.encode(packet) == [wire]
    assert sio.decode(wire) == packet


def test_binary_event_wire_form():
    messages = sio.encode(Packet(sio.EVENT, "/", ["file", {"name": "a", "blob": b"\x01\x02"}, b"\xff"], 5))
    assert messages == [
        '52-5["file",{"name":"a","blob":{"_placeholder":true,"num":0}},{"_placeholder":true,"num":1}]',
        b"\x01\x02",
        b"\xff",
    ]
    (packet,) = feed_all(messages)
    assert packet == Packet(sio.BINARY_EVENT, "/", ["file", {"name": "a", "blob": b"\x01\x02"}, b"\xff"], 5, 2)


def test_binary_ack_with_namespace():
    messages = sio.encode(Packet(sio.ACK, "/ns", [b"x"], 9))
    assert messages == ['61-/ns,9[{"_placeholder":true,"num":0}]', b"x"]
    reassembler = Reassembler()
    assert reassembler.feed(messages[0]) is None
    assert reassembler.feed(messages[1]) == Packet(sio.BINARY_ACK, "/ns", [b"x"], 9, 1)


def test_binary_packet_without_attachments_is_plain():
    assert Reassembler().feed('50-["e",1]') == Packet(sio.EVENT, "/", ["e", 1])
    assert Reassembler().feed("60-4[]") == Packet(sio.ACK, "/", [], 4)


def test_encode_event_shorthand():
    assert sio.encode_event(["jsongle", {}], "/", 1) == ['21["jsongle",{}]']


def test_reassembler_is_reusable():
    reassembler = Reassembler()
    messages = sio.encode(Packet(sio.EVENT, "/", ["a", b"1"])) + sio.encode(Packet(sio.EVENT, "/", ["b"]))
    assert [p.data for p in feed_all(messages, reassembler)] == [["a", b"1"], ["b"]]


# -- round trips -----------------------------------------------------------


@given(namespaces, st.one_of(st.none(), st.dictionaries(st.text(max_size=8), json_values, max_size=4)))
def test_connect_round_trip(namespace, auth):
    packet = Packet(sio.CONNECT, namespace, auth)
    assert feed_all(sio.encode(packet)) == [packet]


@given(namespaces, event_names, st.lists(json_values, max_size=4), ack_ids)
def test_event_round_trip(namespace, name, args, ack_id):
    packet = Packet(sio.EVENT, namespace, [name, *args], ack_id)
    assert feed_all(sio.encode(packet)) == [packet]


@given(namespaces, st.lists(json_values, max_size=4), st.integers(min_value=0, max_value=10**15 - 1))
def test_ack_round_trip(namespace, args, ack_id):
    packet = Packet(sio.ACK, namespace, args, ack_id)
    assert feed_all(sio.encode(packet)) == [packet]


@given(namespaces, event_names, st.lists(binary_values, max_size=4), ack_ids)
def test_binary_event_round_trip(namespace, name, args, ack_id):
    data = [name, *args]
    messages = sio.encode(Packet(sio.EVENT, namespace, data, ack_id))
    buffers = [m for m in messages if isinstance(m, bytes)]
    if len(buffers) > sio.MAX_ATTACHMENTS:
        with pytest.raises(PacketError):
            feed_all(messages)
        return
    (packet,) = feed_all(messages)
    assert packet.data == data and packet.namespace == namespace and packet.id == ack_id
    assert packet.attachments == len(buffers)
    assert packet.type == (sio.BINARY_EVENT if buffers else sio.EVENT)


@given(namespaces)
def test_disconnect_round_trip(namespace):
    packet = Packet(sio.DISCONNECT, namespace)
    assert feed_all(sio.encode(packet)) == [packet]


# -- malformed input -------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "7",
        "x",
        "2",  # EVENT without payload
        "2[]",  # EVENT without a name
        "2[null]",
        "2[true]",
        '2{"a":1}',
        "2[",
        "2/ns,[",
        '0"token"',  # CONNECT payload must be an object
        "0[1]",
        "1{}",  # DISCONNECT takes no payload
        "3[]",  # ACK without an id
        "31{}",
        "5[]",  # no attachment count
        '5x-["a"]',
        '5-["a"]',
        '51["a"]',
        '511-["a"]',  # over MAX_ATTACHMENTS
        '59999-["a"]',
        "2" + "1" * 16 + '["a"]',  # ack id too long
        "2" + "[" * 100000 + "]" * 100000,
    ],
)
def test_bad_packets(text):
    with pytest.raises(PacketError):
        sio.decode(text)


def test_reassembler_rejects_out_of_order_parts():
    with pytest.raises(PacketError):
        Reassembler().feed(b"\x00")
    reassembler = Reassembler()
    assert reassembler.feed('51-["a",{"_placeholder":true,"num":0}]') is None
    with pytest.raises(PacketError):
        reassembler.feed('2["b"]')


@pytest.mark.parametrize(
    "head",
    [
        '51-["a",{"_placeholder":true,"num":1}]',
        '51-["a",{"_placeholder":true,"num":-1}]',
        '51-["a",{"_placeholder":true,"num":"0"}]',
        '51-["a",{"_placeholder":true,"num":true}]',
        '51-["a",{"_placeholder":true,"num":0.0}]',
    ],
)
def test_reassembler_rejects_bad_placeholders(head):
    reassembler = Reassembler()
    assert reassembler.feed(head) is None
    with pytest.raises(PacketError):
        reassembler.feed(b"data")


@pytest.mark.parametrize("depth", [500, 900, 990, 5000])
def test_reassembler_deeply_nested_binary_packet(depth):
    head = '51-["a",' + "[" * depth + '{"_placeholder":true,"num":0}' + "]" * depth + "]"
    reassembler = Reassembler()
    try:
        waiting = reassembler.feed(head)
    except PacketError:
        return  # refused at the head: fine
    assert waiting is None
    try:
        reassembler.feed(b"x")
    except PacketError:
        pass


@given(st.text())
def test_decode_raises_only_packet_error(text):
    try:
        packet = sio.decode(text)
    except PacketError:
        return
    assert 0 <= packet.type <= 6


@given(st.lists(st.one_of(st.text(), st.binary(), st.sampled_from(['51-["a",{"_placeholder":true,"num":0}]', '52-["b"]', "0", '2["x"]'])), max_size=6))
def test_reassembler_raises_only_packet_error(messages):
    reassembler = Reassembler()
    for message in messages:
        try:
            reassembler.feed(message)
        except PacketError:
            reassembler = Reassembler()  # the server closes the client then


@given(st.from_regex(r"[0-6]([0-9]{0,3}-)?(/[a-z,]{0,4},?)?[0-9]{0,3}", fullmatch=True), json_values)
def test_decode_of_near_valid_packets(head, data):
    text = head + sio.dumps(data)
    try:
        sio.decode(text)
    except PacketError:
        pass


def test_json_event_encoded_by_the_caller():
    """An argument already JSON-encoded is framed as is, and decodes like emit's."""
    wire = sio.encode_json_event("jsongle", '{"to":"a","x":["é"]}'.encode(), "/ns")
    assert wire == '2/ns,["jsongle",{"to":"a","x":["é"]}]'.encode()
    assert sio.decode(wire.decode()) == sio.decode(sio.encode(Packet(sio.EVENT, "/ns", ["jsongle", {"to": "a", "x": ["é"]}]))[0])


# -- the JSON codec --------------------------------------------------------


def test_dumps_is_compact_and_keeps_utf8_like_json_stringify():
    from jsongle.socketio.packet import dumps

    assert dumps({"a": [1, 1.5, 1e-7, None, True], "é": "ü"}) == '{"a":[1,1.5,1e-7,null,true],"é":"ü"}'


def test_dumps_falls_back_for_what_orjson_refuses():
    from jsongle.socketio.packet import dumps

    assert dumps([2**70]) == "[1180591620717411303424]"
    assert dumps({1: "x"}) == '{"1":"x"}'
    with pytest.raises(TypeError):
        dumps(["x", b"\x00"])  # binary goes the attachment way


def test_dumps_bytes_is_always_utf8_even_for_lone_surrogates():
    from jsongle.socketio.packet import dumps_bytes

    assert dumps_bytes({"é": "ü"}) == '{"é":"ü"}'.encode()
    # No UTF-8 holds a lone surrogate: escaped, as JSON.stringify does.
    assert dumps_bytes(["\ud800", "é", 2**70]) == b'["\\ud800","\\u00e9",1180591620717411303424]'
    assert json.loads(dumps_bytes(["\ud800", "é"])) == ["\ud800", "é"]


def test_loads_falls_back_for_what_orjson_refuses():
    from jsongle.socketio.packet import loads

    assert loads('["\\ud800"]') == ["\ud800"]
    assert loads("[1]") == [1]
    with pytest.raises(ValueError):
        loads("[1,")


@pytest.mark.parametrize(
    "kind, namespace, data, ack_id",
    [
        (sio.EVENT, "/", ["jsongle", {"é": [1, None]}], None),
        (sio.EVENT, "/", ["jsongle", {}], 7),
        (sio.EVENT, "/ns", ["x"], None),
        (sio.ACK, "/ns", [{"ok": True}], 12),
        (sio.ACK, "/", [], 0),
    ],
)
def test_encode_plain_is_encode_as_utf8(kind, namespace, data, ack_id):
    assert sio.encode_plain(kind, namespace, data, ack_id) == sio.encode(Packet(kind, namespace, data, ack_id))[0].encode()


def test_encode_plain_leaves_binary_to_encode():
    with pytest.raises(TypeError):
        sio.encode_plain(sio.EVENT, "/", ["file", b"\x00"])
