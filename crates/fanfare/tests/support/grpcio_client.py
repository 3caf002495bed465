"""Calls `fanfare dev` with grpcio, the C-core client behind Python, Ruby, PHP and C#, which
refuses response metadata past 16 KiB: bad and huge id lists, and a request past the decode
limit. Prints one JSON line per call: its label, the status code, the status details (the
message) length and the trailing metadata size in bytes as grpcio received it.

Usage: grpcio_client.py GROUPS_ADDR MESSAGES_ADDR FANOUT_ADDR (installed by `make tools`).
Requests are encoded by hand (the methods take int64 lists), so no generated code is needed.
"""

import json
import sys

import grpc


def varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def packed(number, payload):
    """A packed repeated field `number` holding the already-encoded `payload`."""
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def call(address, method, body, label):
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = channel.unary_unary(method)
        try:
            stub(body, metadata=[("x-fanfare-user-id", "1")], timeout=60)
            code, details, trailers = "OK", "", ()
        except grpc.RpcError as error:
            code, details, trailers = error.code().name, error.details() or "", error.trailing_metadata() or ()
    size = sum(len(key) + len(value) for key, value in trailers)
    print(json.dumps({"label": label, "code": code, "message_len": len(details), "trailers": size, "message": details}))


def main():
    groups, messages, fanout = sys.argv[1:4]
    negatives = b"".join(varint(-index) for index in range(1, 1_001))
    call(messages, "/fanfare.messages.v1.MessageService/GetUnreadCounts", packed(1, negatives), "unread_negatives")
    add_members = varint(1 << 3) + varint(1) + packed(2, negatives)
    call(groups, "/fanfare.groups.v1.GroupService/AddMembers", add_members, "add_members_negatives")
    zeros = packed(1, bytes(4_000_000))
    call(fanout, "/fanfare.fanout.v1.FanoutService/GetFollowCounts", zeros, "follow_counts_4_mib")
    over = packed(1, bytes(4_500_000))
    call(fanout, "/fanfare.fanout.v1.FanoutService/GetFollowCounts", over, "follow_counts_over_size")


if __name__ == "__main__":
    main()
