"""``backscore.v1.Backscore`` on a gRPC server, where a request that does not decode is INVALID_ARGUMENT.

grpcio parses every request with the method's ``request_deserializer`` before any of our code runs;
with the generated ``add_BackscoreServicer_to_server``, bytes that are not the method's message (a
client with another proto, a fuzzer, ``b"\\xff\\xff\\xff"``) end the call UNKNOWN with
"Unexpected <class 'google.protobuf.message.DecodeError'>: ...". :func:`add_backscore_to_server`
registers the same methods with a deserializer that never raises: a message that does not parse
becomes an :class:`Undecodable`, and reading anything from it raises
:class:`~pipelines.errors.InputError` -- INVALID_ARGUMENT with a short message, by the error table.

* Ray Serve's gRPC proxy (production; :data:`~serve.grpc.servicer.GRPC_SERVICER_FUNCTIONS` and
  deploy/*.yaml name this function) keeps our deserializers and replaces the behaviours with its own,
  which hand the request, pickled, to the gateway replica. There the method's first read of the request
  raises InputError inside its ``_Call`` (:mod:`serve.grpc.servicer`), which sets INVALID_ARGUMENT.
* A plain ``grpc.aio`` server (:func:`start_server`: tests, tools) gets behaviours that end a call
  with the code and details a method sets (a ``GrpcError``) or the table's code for a project error,
  as the proxy does -- not grpcio's "Unexpected <class ...>" details.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from pipelines.errors import InputError, error_status, is_reported
from serve.proto.backscore.v1 import backscore_pb2_grpc as pb_grpc

SERVICE_NAME = "backscore.v1.Backscore"


class Undecodable:
    """A request whose bytes are not the method's message. Reading any field or method of it raises
    :class:`InputError` (its ``details``); it pickles, so Ray can carry it to a replica."""

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type

    @property
    def details(self) -> str:
        name = self.__dict__.get("message_type", "request")
        return f"the request is not a valid {name} message (it does not decode)"

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):  # pickle, copy and friends probe for these: absent, as on any object
            raise AttributeError(name)
        raise InputError(self.details)

    def __repr__(self) -> str:
        return f"Undecodable({self.__dict__.get('message_type')!r})"


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserializer`` (a message class's ``FromString``) returning an :class:`Undecodable` instead of raising."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    message_type = str(getattr(descriptor, "full_name", "request"))

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:
            return Undecodable(message_type)

    return parse


def _status(exc: Exception) -> tuple[grpc.StatusCode, str] | None:
    """The status a method's exception ends the call with on a plain server; None: not ours (a bug)."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if isinstance(code, grpc.StatusCode) and isinstance(details, str):  # serve.grpc.servicer.GrpcError
        return code, details
    if is_reported(exc):
        return grpc.StatusCode[error_status(exc).grpc_code], str(exc)
    return None


async def _end(context: grpc.aio.ServicerContext, exc: Exception) -> NoReturn:
    status = None if isinstance(exc, grpc.aio.AbortError) else _status(exc)
    if status is None:
        raise exc
    await context.abort(*status)
    raise AssertionError("unreachable: abort raises")


def _guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with a tolerant deserializer and behaviours that end with a clean status (see module doc)."""

    def single(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await fn(request, context)
            except Exception as exc:
                await _end(context, exc)

        return call

    def streamed(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for message in fn(request, context):
                    yield message
            except Exception as exc:
                await _end(context, exc)

        return call

    h: Any = handler  # grpcio's handlers are named tuples
    assert h.request_deserializer is not None
    new: grpc.RpcMethodHandler = h._replace(
        request_deserializer=tolerant(h.request_deserializer),
        unary_unary=h.unary_unary and single(h.unary_unary),
        stream_unary=h.stream_unary and single(h.stream_unary),
        unary_stream=h.unary_stream and streamed(h.unary_stream),
        stream_stream=h.stream_stream and streamed(h.stream_stream),
    )
    return new


class _Collector:
    """Stands where the server is for the generated registration function: keeps its method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        assert service == SERVICE_NAME, service
        self.handlers = dict(handlers)


def add_backscore_to_server(servicer: Any, server: Any) -> None:
    """The generated ``add_BackscoreServicer_to_server`` (same methods, same messages), with requests that
    do not decode refused INVALID_ARGUMENT (see the module doc). A ``grpc_servicer_functions`` entry."""
    collector = _Collector()
    pb_grpc.add_BackscoreServicer_to_server(servicer, collector)
    if not collector.handlers:
        raise RuntimeError("the generated code did not register backscore.v1.Backscore's methods")
    handlers = {name: _guard(h) for name, h in collector.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    register = getattr(server, "add_registered_method_handlers", None)
    if register is not None:
        register(SERVICE_NAME, handlers)


class _Health:
    """``grpc.health.v1.Health`` on a plain server: ``Check`` is the servicer's; ``List`` and ``Watch`` (which the
    proxy does not route either) are UNIMPLEMENTED."""

    def __init__(self, servicer: Any) -> None:
        self.Check = servicer.Check

    @staticmethod
    async def List(request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "List is not implemented")
        raise AssertionError("unreachable: abort raises")

    @staticmethod
    async def Watch(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Watch is not implemented")
        yield  # unreachable: makes this the async generator a server-streaming method is


async def start_server(servicer: Any, address: str = "127.0.0.1:0", options: Sequence[tuple[str, Any]] = (),
                       *, health: bool = False) -> tuple[grpc.aio.Server, int]:
    """A started plain ``grpc.aio`` server with ``servicer`` (e.g. a gateway core with
    :class:`~serve.grpc.servicer.GrpcMethods`) on ``address``; returns it and its port. ``health``: also
    ``grpc.health.v1.Health`` (answered by the servicer's ``Check``, as the proxy's registration does)."""
    server = grpc.aio.server(options=list(options))
    add_backscore_to_server(servicer, server)
    if health:
        from grpc_health.v1 import health_pb2_grpc

        health_pb2_grpc.add_HealthServicer_to_server(_Health(servicer), server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
