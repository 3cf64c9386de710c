"""Schemathesis against kotae's own OpenAPI schema, on the live server: well over 1,000 generated requests,
valid and invalid, and not one 5xx; every response has a declared status, content type, headers and body
schema; no error body carries a stack trace or a server path. Admin routes are fuzzed with the token and
without it.

Bounded for the suite: a fixed number of examples per operation, no shrinking, a fixed seed."""

import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_fixtures import ADMIN_TOKEN, MANUALS, MANUALS_KEY

import kotae

EXAMPLES_PER_OPERATION = 90
"""Per operation, generation mode (valid, invalid) and token variant: about 1,100 requests in all."""
MINIMUM_REQUESTS = 1000
ADMIN_PATHS = ("/admin", "/v1/collections")
"""Routes behind the admin token: fuzzed with it and without it."""
LEAKS = re.compile(r'Traceback|File "|site-packages|\.py\b')

CONFIG = schemathesis.Config.from_dict(
    # Invalid input may also be refused for its size (413: the test server caps bodies at 16 KiB).
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 413, 422]}}}
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def restore_adapters(live) -> Iterator[None]:
    """The fuzzer loads and unloads adapters at random (it may hit `b`): put back what the session's other
    tests rely on."""
    with live.admin() as admin:
        before = {adapter["name"]: adapter["path"] for adapter in admin.get("/admin/adapters").json()["data"]}
    yield
    with live.admin() as admin:
        after = {adapter["name"]: adapter["path"] for adapter in admin.get("/admin/adapters").json()["data"]}
        for name in after.keys() - before.keys():
            admin.delete(f"/admin/adapters/{name}").raise_for_status()
        for name, path in before.items():
            if after.get(name) != path:
                admin.post("/admin/adapters", json={"name": name, "path": path}).raise_for_status()


def private_paths(live) -> tuple[str, ...]:
    """Where the server's files are: the workspace, the source tree, the virtual environment."""
    return (*live.private_paths, str(Path(kotae.__file__).resolve().parent), sys.prefix)


def fuzz(
    operation,
    mode: GenerationMode,
    headers: dict[str, str],
    checks: list,
    seen: Counter[int],
    examples: int = EXAMPLES_PER_OPERATION,
) -> None:
    """`examples` generated requests to one operation; the first failed check fails."""

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=examples,
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def call(case) -> None:
        response = case.call(headers=headers, timeout=120)
        case.validate_response(response, checks=checks, headers=headers)
        seen[response.status_code] += 1

    try:
        call()
    except Unsatisfiable:
        # Nothing in the operation's schema can be violated (free strings, no body): no negative cases.
        assert mode is GenerationMode.NEGATIVE


def test_generated_requests_get_no_5xx_and_conform_to_the_schema(live, restore_adapters):
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=CONFIG)
    hidden = private_paths(live)

    def no_internals_in_errors(ctx, response, case) -> None:
        """Error bodies say what was wrong with the request, never how the server is built."""
        if response.status_code >= 400:
            assert not LEAKS.search(response.text), f"{case.operation.label}: {response.text[:300]}"
            assert not any(path in response.text for path in hidden), response.text[:300]

    checks = [*CHECKS, no_internals_in_errors]
    statuses: Counter[int] = Counter()
    admin_without_token: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(
                operation,
                mode,
                {},
                checks,
                admin_without_token if operation.path.startswith(ADMIN_PATHS) else statuses,
            )
            if operation.path.startswith(ADMIN_PATHS):
                fuzz(operation, mode, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, checks, statuses)

    total = sum(statuses.values()) + sum(admin_without_token.values())
    print(f"fuzz: {total} requests; statuses {dict(sorted((statuses + admin_without_token).items()))}")
    assert total >= MINIMUM_REQUESTS
    # Without the token nothing gets through: 401, 400 for a body that is not JSON at all (FastAPI reads
    # the body before it checks the token), or 404 for a path that names no route.
    assert set(admin_without_token) <= {400, 401, 404} and admin_without_token[401], admin_without_token
    assert statuses[200] > 0 and statuses[422] > 0


QUERY_ROUTES = ("/v1/qa", "/v1/chat/completions")


def collection_read(case) -> str | None:
    """The collection a generated query request reads, None when it reads none (chat without retrieval)."""
    body = case.body if isinstance(case.body, dict) else {}
    if case.path == "/v1/qa":
        return body.get("collection") or "default"
    options = body.get("kotae") if isinstance(body.get("kotae"), dict) else {}
    return None if options.get("retrieval") is False else options.get("collection") or "default"


def test_no_generated_request_reads_a_collection_without_the_right_key(keyed):
    """On a server with API keys, generated requests to the query routes never succeed without a key, and
    with a key that holds only `manuals` they succeed only when they read `manuals` (or nothing)."""
    schema = schemathesis.openapi.from_url(f"{keyed}/openapi.json", config=CONFIG)
    manual_ids = {row["id"] for row in MANUALS}

    def nothing_without_a_key(ctx, response, case) -> None:
        assert response.status_code >= 400, (
            f"{case.operation.label} answered {response.status_code} without a key"
        )

    def only_the_keys_collection(ctx, response, case) -> None:
        if response.status_code < 400:
            assert collection_read(case) in ("manuals", None), case.body
            body = response.json()
            sources = body.get("sources") or body.get("kotae_sources") or []
            assert {source["id"] for source in sources} <= manual_ids

    without: Counter[int] = Counter()
    scoped: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path not in QUERY_ROUTES:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, {}, [not_a_server_error, nothing_without_a_key], without, examples=40)
            headers = {"Authorization": f"Bearer {MANUALS_KEY}"}
            fuzz(
                operation, mode, headers, [not_a_server_error, only_the_keys_collection], scoped, examples=40
            )
    print(f"keyed fuzz: without a key {dict(without)}; with the manuals key {dict(scoped)}")
    assert without[401] and scoped[403]
