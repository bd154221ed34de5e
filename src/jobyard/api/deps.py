"""Request dependencies: the services (all built by ``wiring.build_services``) and the
authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from jobyard import errors
from jobyard.domain.auth import Principal, Role
from jobyard.service.notifications import DeliveryLog
from jobyard.service.packages import PackageService
from jobyard.service.status import SystemStatusService
from jobyard.wiring import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_status_service(services: ServicesDep) -> SystemStatusService:
    return services.status


def get_packages(services: ServicesDep) -> PackageService:
    return services.packages


def get_delivery_log(services: ServicesDep) -> DeliveryLog:
    return services.deliveries


StatusServiceDep = Annotated[SystemStatusService, Depends(get_status_service)]
PackagesDep = Annotated[PackageService, Depends(get_packages)]
DeliveryLogDep = Annotated[DeliveryLog, Depends(get_delivery_log)]


async def get_caller(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(description="Bearer <api key>")] = None,
) -> Principal:
    """An API key's principal, or a running job's (its token may only report). A key
    read in the last seconds is checked without the database and without leaving the
    event loop; anything else is read in the thread pool."""
    principal = services.auth.cached(authorization)
    if principal is None:
        principal = await run_in_threadpool(services.auth.authenticate, authorization)
    services.rate_limiter.check(principal.key_id)
    return principal


async def known_caller(services: Services, authorization: str | None) -> Principal | None:
    """For the fast paths in front of FastAPI (``fast_submit``, ``fast_reads``): the
    principal of a key read before, from the cache, or read again in the thread pool
    (as :func:`get_caller` would) when its entry is due; None where the route must answer
    (a key never read, a job token, a refused key: the route answers its error), before
    anything counted the request against the key's rate."""
    try:
        principal = services.auth.cached(authorization)
        if principal is None:
            if not services.auth.was_cached(authorization):
                return None
            principal = await run_in_threadpool(services.auth.authenticate, authorization)
    except errors.JobyardError:
        return None
    return principal


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_user(caller: Principal, method: str) -> Principal:
    """An API key's principal for a request with this HTTP method: job tokens may only
    report, viewer keys may only read; finer rules (operator, admin, own jobs) are
    checked by the services."""
    if caller.job_id is not None:
        raise errors.Forbidden("a job token may only report progress, metrics and items of its job")
    if caller.role is Role.VIEWER and method not in READ_METHODS:
        raise errors.Forbidden("a viewer key may only read")
    return caller


async def get_principal(
    request: Request, caller: Annotated[Principal, Depends(get_caller)]
) -> Principal:
    return check_user(caller, request.method)


PrincipalDep = Annotated[Principal, Depends(get_principal)]
#: accepts job tokens too (the report endpoint only)
ReporterDep = Annotated[Principal, Depends(get_caller)]
