#!/usr/bin/env python3
"""A standard (non-tonic) gRPC client for the end-to-end tests: grpcio's C core.

The Rust tests build every request message with prost and let this probe send the bytes as they
are, so what it checks is how a stock gRPC stack (the one grpc-java, grpc-swift and Envoy share
the wire behaviour of) sees the answers: code, message, `grpc-status-details-bin`, trailers.

Reads one JSON document from stdin:

    {"calls": [{
        "target": "127.0.0.1:PORT",
        "tls": null | {"ca": PATH, "cert": PATH, "key": PATH, "server_name": "otp.juntos.internal"},
        "path": "/juntos.otp.v1.Otp/RequestCode",
        "kind": "unary" | "server_stream" | "client_stream" | "bidi_stream",
        "requests": ["<hex of a serialized request message>", ...],
        "metadata": [["key", "value"], ...],      (values of `-bin` keys are hex)
        "timeout": 10
    }, ...]}

and prints one JSON document on stdout, one result per call, in order:

    {"results": [{
        "code": "OK" | "INVALID_ARGUMENT" | ... | "PROBE_ERROR",
        "message": "..." | null,
        "details_bin": "<hex of the grpc-status-details-bin trailer>" | null,
        "initial": [[key, value], ...],
        "trailing": [[key, value], ...],         (values of `-bin` keys are hex)
        "responses": ["<hex>", ...],
        "debug": "<grpcio's debug error string>" | null
    }, ...]}

One call's failure is recorded in its result, never fatal. Needs only `grpcio` (scripts/test.sh
installs it into the workspace's .venv).
"""

import json
import sys

try:
    import grpc
except ImportError:  # pragma: no cover - reported to the Rust test as is
    sys.stderr.write(
        "grpc_probe: the Python package grpcio is missing; run scripts/test.sh, which installs "
        "it into the workspace's .venv\n"
    )
    sys.exit(3)

DETAILS_KEY = "grpc-status-details-bin"


def _metadata_out(pairs):
    """grpcio metadata as JSON pairs; binary values (keys ending in -bin) as hex."""
    out = []
    for key, value in pairs or ():
        if isinstance(value, bytes):
            value = value.hex()
        out.append([key, value])
    return out


def _metadata_in(pairs):
    out = []
    for key, value in pairs or ():
        key = key.lower()
        if key.endswith("-bin"):
            out.append((key, bytes.fromhex(value)))
        else:
            out.append((key, value))
    return tuple(out)


def _details_bin(trailing):
    for key, value in trailing or ():
        if key == DETAILS_KEY:
            return value.hex() if isinstance(value, bytes) else value.encode().hex()
    return None


def _channel(call):
    target = call["target"]
    tls = call.get("tls")
    if not tls:
        return grpc.insecure_channel(target)

    def read(name):
        path = tls.get(name)
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read("ca"),
        private_key=read("key"),
        certificate_chain=read("cert"),
    )
    options = []
    if tls.get("server_name"):
        options.append(("grpc.ssl_target_name_override", tls["server_name"]))
    return grpc.secure_channel(target, credentials, options=options)


def _result(code, message, initial, trailing, responses, debug=None):
    return {
        "code": code,
        "message": message,
        "details_bin": _details_bin(trailing),
        "initial": _metadata_out(initial),
        "trailing": _metadata_out(trailing),
        "responses": [r.hex() for r in responses],
        "debug": debug,
    }


def _from_error(error, responses):
    """A result from a grpc.RpcError (which is also the grpc.Call of the failed call)."""
    code = error.code() if hasattr(error, "code") else None
    name = code.name if code is not None else "UNKNOWN"

    def safe(method):
        try:
            return getattr(error, method)()
        except Exception:  # noqa: BLE001 - a call object without this part
            return None

    return _result(
        name,
        safe("details"),
        safe("initial_metadata"),
        safe("trailing_metadata"),
        responses,
        safe("debug_error_string"),
    )


def make_call(call):
    kind = call.get("kind", "unary")
    path = call["path"]
    requests = [bytes.fromhex(r) for r in call.get("requests", [])]
    metadata = _metadata_in(call.get("metadata"))
    timeout = call.get("timeout", 10)
    responses = []
    channel = _channel(call)
    try:
        # No serializers: the bytes go on the wire (and come back) as they are.
        if kind == "unary":
            if len(requests) != 1:
                raise ValueError("a unary call takes exactly one request")
            method = channel.unary_unary(
                path, request_serializer=None, response_deserializer=None
            )
            response, rpc = method.with_call(requests[0], metadata=metadata, timeout=timeout)
            responses.append(response)
        elif kind == "client_stream":
            method = channel.stream_unary(
                path, request_serializer=None, response_deserializer=None
            )
            response, rpc = method.with_call(iter(requests), metadata=metadata, timeout=timeout)
            responses.append(response)
        elif kind in ("server_stream", "bidi_stream"):
            if kind == "server_stream":
                if len(requests) != 1:
                    raise ValueError("a server-streaming call takes exactly one request")
                method = channel.unary_stream(
                    path, request_serializer=None, response_deserializer=None
                )
                rpc = method(requests[0], metadata=metadata, timeout=timeout)
            else:
                method = channel.stream_stream(
                    path, request_serializer=None, response_deserializer=None
                )
                rpc = method(iter(requests), metadata=metadata, timeout=timeout)
            for response in rpc:
                responses.append(response)
        else:
            raise ValueError(f"unknown call kind {kind!r}")
        return _result(
            rpc.code().name,
            rpc.details(),
            rpc.initial_metadata(),
            rpc.trailing_metadata(),
            responses,
        )
    except grpc.RpcError as error:
        return _from_error(error, responses)
    finally:
        channel.close()


def main():
    try:
        document = json.load(sys.stdin)
        calls = document["calls"]
    except (ValueError, KeyError, TypeError) as e:
        sys.stderr.write(f"grpc_probe: bad input: {e}\n")
        return 2
    results = []
    for call in calls:
        try:
            results.append(make_call(call))
        except Exception as e:  # noqa: BLE001 - recorded, the other calls still run
            results.append(
                {
                    "code": "PROBE_ERROR",
                    "message": f"{type(e).__name__}: {e}",
                    "details_bin": None,
                    "initial": [],
                    "trailing": [],
                    "responses": [],
                    "debug": None,
                }
            )
    json.dump({"results": results}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
