"""Endpoint devices: a model behind an inference server, measured end to end under emulated network conditions.

``kserve+http://HOST:PORT/MODEL`` (KServe v2 REST), ``kserve+grpc://HOST:PORT/MODEL`` (KServe v2 gRPC) and
``tfserving+http://HOST:PORT/MODEL`` (TF Serving v1 REST). :mod:`.backend` is the device, :mod:`.client` the
protocol clients and the mobile client's policy, :mod:`.network` the profiles and methods, :mod:`.proxy` the
shaping TCP proxy. See ``docs/server.md``.
"""

from harness.devices.endpoint.backend import (  # noqa: F401 - the backend's entry points (discovery's table)
    SCHEMES,
    EndpointDevice,
    list_endpoint_devices,
    open_endpoint_device,
    parse_endpoint_id,
)
