"""The gateway replica's hosts without Ray, for tests that call its methods directly."""

from __future__ import annotations

import grpc

from serve.core import GatewayCore
from serve.grpc.servicer import GrpcMethods


class InProcessGateway(GatewayCore, GrpcMethods):
    """The product's gateway core (HTTP, WebRTC) with the gRPC methods mixed in, as the Ray replica has them."""


class RecordingContext:
    """Stands where Ray's gRPC context would: keeps the code and details the servicer sets."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details
